"""Pages, one module per domain, each with its forms beside its views. Every page states who may
open it; a campaign page gets its campaign through `access.campaign_page`."""
