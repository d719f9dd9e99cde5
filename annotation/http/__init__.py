"""The HTTP layer's fast lanes: the serving hot path and the websocket consumers."""
