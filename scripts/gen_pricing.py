#!/usr/bin/env python3
"""Generate the shipped price table ``src/bedrock_gateway/quota/pricing.json`` (schema 2).

Sources (the gateway never imports them): genai-prices (PyPI ``genai-prices``, provider
``aws``); LiteLLM's ``model_prices_and_context_window_backup.json`` (PyPI ``litellm``,
``litellm_provider`` starting with ``bedrock``); ``scripts/pricing_supplement.json``, curated
by hand from the AWS Bedrock pricing page for what neither has. After ``pip install
genai-prices litellm`` both are found with importlib; or point at unpacked wheels::

    python scripts/gen_pricing.py [--report FILE]   # rewrite pricing.json, print the report
    python scripts/gen_pricing.py --check           # exit 1 if pricing.json is stale
    python scripts/gen_pricing.py --genai-prices DIR --litellm DIR_OR_JSON [--date YYYY-MM-DD]

``--date`` (default today; ``--check`` reuses the table's ``generated``) picks the
genai-prices price list in force and dates dataset entries: same inputs, same bytes.

Merging:

* genai-prices first for what it has (token, cache read/write/1h rates, long-context tiers,
  global vs regional): it is curated and cites the AWS price list. LiteLLM for the rest:
  models genai-prices lacks, priority/flex tiers, per-geo-prefix and per-region entries,
  embeddings, images, rerank, guardrails, long-context tiers genai-prices has none of.
* Ids: the bare Bedrock id. A genai-prices model takes the LiteLLM id its ``match`` clause
  matches (LiteLLM spells real ids, e.g. ``-v1:0``), else its id minus ``regional.``/
  ``global.``. ``regional.X`` prices ``rates`` and the geo prefixes its clause names;
  ``global.X`` prices ``geo.global``.
* Same model, variant and field in both, more than 0.5% apart: genai-prices is kept and the
  conflict reported; LiteLLM's tier and long-context rates for that field are rescaled to
  genai-prices' base. A geo prefix with its own LiteLLM entry is more specific than
  genai-prices' shared regional rate, so LiteLLM's is kept there (also reported).
* The supplement wins for the fields it lists (differences reported); its guardrail prices
  only fill policies LiteLLM lacks.
* Derived fills, AWS's documented rules, only where no source has the number (named in the
  entry's source): caching Claude models (3.5 Haiku, 3.5 Sonnet v2, 3.7 Sonnet, 4.x, 5.x)
  cache_write 1.25x, cache_read 0.1x, cache_write_1h 2x input; Nova 1 (micro, lite, pro,
  premier) cache_read 0.25x input, cache_write 0.
* Skipped: provisioned throughput, batch prices, ``bedrock_mantle`` (another endpoint),
  ``claude_platform``, aliases that are not Bedrock ids, entries without a usable price.
"""

from __future__ import annotations

import sys

from pricegen.table import main

if __name__ == "__main__":
    sys.exit(main())
