"""Maker-checker (四眼原则) for the changes to money and supply: requests, approvals, refusals."""
