"""Payment channel adapters (缴费渠道): each turns what a channel sends into verified payments."""
