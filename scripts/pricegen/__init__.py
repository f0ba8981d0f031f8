"""The price-table generator behind ``scripts/gen_pricing.py``, whose docstring holds the
merge rules: ``genai`` and ``litellm`` read the datasets into rate sets (``core``), ``merge``
combines them with the supplement, ``table`` renders, writes and checks ``pricing.json``."""
