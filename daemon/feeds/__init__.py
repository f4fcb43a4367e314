"""Live feed clients: thin websocket loops around the sans-I/O sessions in ``tickd.codecs``."""
