"""Model routing and caching: aliases with weighted, sticky targets (:mod:`.aliases`), a circuit
breaker per target (:mod:`.breaker`), fallback before the first byte (:mod:`.fallback`) and a
response cache that replays streams byte for byte (:mod:`.cache`, :mod:`.cache_store`).

Not yet wired into the TOML configuration or moved before the access policy (issue 6)."""
