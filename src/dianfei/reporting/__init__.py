"""KPIs, charts and exports."""
