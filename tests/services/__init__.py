"""Real servers the tests start on 127.0.0.1 (imgest itself, and the backing services)."""
