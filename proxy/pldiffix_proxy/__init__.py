"""pldiffix's PostgreSQL wire-protocol front: plain SQL from any client (docs/proxy.md)."""
