"""Writes: `<entity>_<action>` functions with keyword-only arguments, each in a transaction."""
