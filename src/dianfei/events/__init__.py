"""The event outbox (事件发件箱): what happened to money and supply, for the packages that follow it."""
