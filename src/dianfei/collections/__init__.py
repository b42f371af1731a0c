"""Collections (催费): late fees, dunning, notices, suspension/reconnection, prepay."""
