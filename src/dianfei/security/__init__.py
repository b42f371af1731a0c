"""Users, authentication, roles, audit chain, PII encryption and masking."""
