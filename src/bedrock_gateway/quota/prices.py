"""What one model costs, in every dimension Bedrock bills on demand, and the bill of one call.

A :class:`Price` holds exact :class:`~decimal.Decimal` rates (USD): per 1M tokens for input,
output, cache reads and cache writes by TTL (5 minutes, 1 hour); long-context rates that apply
to the whole request when its prompt passes a size; service-tier (``priority``, ``flex``) and
latency-optimized rates; and per-unit prices for what is not billed by token — per image (by
size and quality), per second of video, per rerank query, per input image.

For the hot path a price is compiled once into integers (:class:`Rates`, pico-USD), so the
bill of a call is one exact integer sum: ``Rates.bill(usage, terms)`` in atto-USD (1e-18),
which the budgets round up to the nano-dollar and the records print exactly.

Fallbacks, never a silent $0: a missing cache-read or cache-write rate is the input rate, a
missing 1-hour cache-write rate the 5-minute one (long-context sets: their own input rate), a
field missing from a tier's rates the standard field; long context under a tier scales the
tier's rate by the long-context ratio.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from bedrock_gateway.quota.usage_fields import Usage

__all__ = ["TOKEN_FIELDS", "LongContext", "Price", "Rates", "Terms", "TokenRates", "atto",
           "parse_rate", "usd"]

TOKEN_FIELDS = ("input", "output", "cache_read", "cache_write", "cache_write_1h")
TIERS = ("priority", "flex", "latency_optimized")
_UNIT_FIELDS = ("video_second", "query", "image_input")
_RATESET_KEYS = frozenset((*TOKEN_FIELDS, *TIERS, *_UNIT_FIELDS, "long_context", "image"))
_PICO = Decimal(10**12)
_MILLION = 1_000_000


def parse_rate(value: object, what: str) -> Decimal:
    """A price: a number or a numeric string, finite, >= 0, at most 12 decimal places."""
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise TypeError(f"{what}: a price must be a number, not {value!r}")
    try:
        rate = Decimal(str(value)) if isinstance(value, float) else Decimal(value)
    except ArithmeticError:  # decimal.InvalidOperation: "abc"
        rate = Decimal("NaN")
    if not rate.is_finite() or rate < 0:
        raise ValueError(f"{what}: a price must be a finite number >= 0, not {value!r}")
    if (rate * _PICO) != (rate * _PICO).to_integral_value():
        raise ValueError(f"{what}: at most 12 decimal places, not {value!r}")
    return rate


def _pico(rate: Decimal) -> int:
    return int(rate * _PICO)


def atto(amount: Decimal) -> int:
    """USD (at most 12 decimals, as :func:`parse_rate` ensures) as exact atto-USD."""
    return _pico(amount) * _MILLION


@dataclass(frozen=True, slots=True)
class TokenRates:
    """Rates for token dimensions (USD per 1M tokens); ``None`` falls back (module docstring)."""

    input: Decimal | None = None
    output: Decimal | None = None
    cache_read: Decimal | None = None
    cache_write: Decimal | None = None
    cache_write_1h: Decimal | None = None

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], what: str) -> TokenRates:
        if not isinstance(data, Mapping):
            raise TypeError(f"{what}: expected a mapping, not {type(data).__name__}")
        unknown = set(data) - set(TOKEN_FIELDS)
        if unknown:
            raise ValueError(f"{what}: unknown keys {sorted(unknown)}")
        return cls(**{k: None if data.get(k) is None else parse_rate(data[k], f"{what}.{k}")
                      for k in TOKEN_FIELDS})


@dataclass(frozen=True, slots=True)
class LongContext:
    """Rates for the whole request when its prompt tokens are more than ``above``."""

    above: int
    rates: TokenRates


@dataclass(frozen=True, slots=True)
class Terms:
    """What a request asked for that changes its price (read by :mod:`.terms`)."""

    tier: str | None = None  # requested service tier: "priority" | "flex" | None (standard)
    latency: str | None = None  # "optimized" when the latency-optimized model was asked for
    cache_1h: bool = False  # the request may write to the cache with a 1-hour TTL
    image_key: str | None = None  # "<W>x<H>/<quality>" of generated images
    images: int = 0  # images the request asks for
    video_seconds: int = 0  # seconds of video the request asks for
    queries: int = 0  # rerank queries
    input_images: int = 0  # images sent to a multimodal embedding model


@dataclass(frozen=True, slots=True)
class Price:
    """Everything one model is billed at in one geography (see the module docstring)."""

    input: Decimal
    output: Decimal
    cache_read: Decimal | None = None
    cache_write: Decimal | None = None
    cache_write_1h: Decimal | None = None
    long_context: tuple[LongContext, ...] = ()
    priority: TokenRates | None = None
    flex: TokenRates | None = None
    latency_optimized: TokenRates | None = None
    image: tuple[tuple[str, Decimal], ...] = ()  # ("1024x1024/premium", $), ("*", default $)
    video_second: Decimal | None = None
    query: Decimal | None = None
    image_input: Decimal | None = None
    _rates: list[Rates] = field(default_factory=list, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        for name in (*TOKEN_FIELDS, *_UNIT_FIELDS):
            value = getattr(self, name)
            if value is None and name not in ("input", "output"):
                continue
            if not isinstance(value, Decimal):  # floats would carry binary error into money
                raise TypeError(f"Price.{name} must be a Decimal, not {type(value).__name__}")
            parse_rate(value, f"Price.{name}")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], what: str = "price") -> Price:
        """A rate set as in ``pricing.json`` (see ``docs/quota.md``): numbers or strings."""
        if not isinstance(data, Mapping):
            raise TypeError(f"{what}: expected a mapping, not {type(data).__name__}")
        unknown = set(data) - _RATESET_KEYS
        if unknown:
            raise ValueError(f"{what}: unknown keys {sorted(unknown)}")
        units = {k: parse_rate(data[k], f"{what}.{k}") for k in _UNIT_FIELDS
                 if data.get(k) is not None}
        image = data.get("image") or {}
        if not isinstance(image, Mapping):
            raise TypeError(f"{what}.image: expected a mapping of size/quality to a price")
        images = tuple(sorted((str(k), parse_rate(v, f"{what}.image[{k!r}]"))
                              for k, v in image.items()))
        has_tokens = data.get("input") is not None or data.get("output") is not None
        if not has_tokens and not units and not images:
            raise ValueError(f"{what}: no price (input/output, image, video_second, query)")
        base = TokenRates.from_mapping({k: data[k] for k in TOKEN_FIELDS if k in data}, what)
        tiers = {t: TokenRates.from_mapping(data[t], f"{what}.{t}") for t in TIERS
                 if data.get(t) is not None}
        return cls(base.input if base.input is not None else Decimal(0),
                   base.output if base.output is not None else Decimal(0),
                   base.cache_read, base.cache_write, base.cache_write_1h,
                   _long_context(data.get("long_context") or [], what), image=images,
                   **tiers, **units)  # type: ignore[arg-type]

    def compiled(self) -> Rates:
        """The integer form (built once per price)."""
        if not self._rates:
            self._rates.append(Rates(self))
        return self._rates[0]

    def cost(self, input_tokens: int, output_tokens: int, cache_read_tokens: int = 0,
             cache_write_tokens: int = 0, *, cache_write_1h_tokens: int = 0,
             tier: str | None = None, latency: str | None = None) -> Decimal:
        """Exact USD for these token counts (not rounded; round only for display)."""
        counts = (input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
                  cache_write_1h_tokens)
        for count in counts:
            if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                raise ValueError(f"token counts must be integers >= 0, not {count!r}")
        usage = Usage(input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
                      cache_write_1h_tokens=cache_write_1h_tokens, service_tier=tier,
                      latency=latency)
        return usd(self.compiled().bill(usage, Terms()))


def usd(atto: int) -> Decimal:
    """An atto-USD amount as exact USD."""
    return Decimal(atto).scaleb(-18).normalize()


def _long_context(entries: object, what: str) -> tuple[LongContext, ...]:
    if not isinstance(entries, list):
        raise TypeError(f"{what}.long_context: expected a list of {{above, rates...}}")
    out = []
    for i, entry in enumerate(entries):
        where = f"{what}.long_context[{i}]"
        if not isinstance(entry, Mapping):
            raise TypeError(f"{where}: expected a mapping")
        above = entry.get("above")
        if isinstance(above, bool) or not isinstance(above, int) or above < 0:
            raise ValueError(f"{where}.above: a token count >= 0, not {above!r}")
        out.append(LongContext(above, TokenRates.from_mapping(
            {k: v for k, v in entry.items() if k != "above"}, where)))
    return tuple(sorted(out, key=lambda lc: lc.above))


_Tuple5 = tuple[int, int, int, int, int]


def _resolve(rates: TokenRates, standard: _Tuple5 | None, own_cache: bool = False) -> _Tuple5:
    """Five pico rates with the fallbacks applied: against ``standard`` for a tier; a
    long-context set (``own_cache``) takes missing cache rates from its own input rate."""
    def pick(value: Decimal | None, i: int, fallback: int) -> int:
        if value is not None:
            return _pico(value)
        if standard is not None and not (own_cache and i >= 2):
            return standard[i]
        return fallback

    inp = pick(rates.input, 0, 0)
    out = pick(rates.output, 1, 0)
    read = pick(rates.cache_read, 2, inp)
    write = pick(rates.cache_write, 3, inp)
    return inp, out, read, write, pick(rates.cache_write_1h, 4, write)


class Rates:
    """A :class:`Price` compiled to integers: pico-USD per 1M tokens (or per unit)."""

    __slots__ = ("_tiers", "_worst", "image", "image_input", "long", "query", "standard",
                 "video")

    def __init__(self, price: Price) -> None:
        base = TokenRates(price.input, price.output, price.cache_read, price.cache_write,
                          price.cache_write_1h)
        self.standard = _resolve(base, None)
        self._tiers = {name: _resolve(t, self.standard) for name in TIERS
                       if (t := getattr(price, name)) is not None}
        self.long = tuple((lc.above, _resolve(lc.rates, self.standard, own_cache=True))
                          for lc in price.long_context)
        self.image = {key: _pico(v) for key, v in price.image}
        self.video = _pico(price.video_second) if price.video_second is not None else None
        self.query = _pico(price.query) if price.query is not None else None
        self.image_input = _pico(price.image_input) if price.image_input is not None else None
        self._worst: dict[tuple[str | None, str | None, int], _Tuple5] = {}

    def tokens(self, tier: str | None, latency: str | None, prompt: int) -> _Tuple5:
        """The five token rates for a request of ``prompt`` tokens at this tier/latency."""
        key = "latency_optimized" if latency == "optimized" else tier
        chosen = self._tiers.get(key or "", self.standard)
        for above, long in reversed(self.long):
            if prompt > above:
                if chosen is self.standard:
                    return long
                return tuple(  # type: ignore[return-value]
                    c * lng // s if s else lng
                    for c, lng, s in zip(chosen, long, self.standard, strict=True))
        return chosen

    def worst_tokens(self, tier: str | None, latency: str | None, prompt: int) -> _Tuple5:
        """Each rate at its dearest over what Bedrock may bill for the request: the asked-for
        tier or standard (a tier may be served at standard), long context if it may apply."""
        key = (tier, latency, sum(1 for above, _ in self.long if prompt > above)
               if self.long else 0)
        found = self._worst.get(key)
        if found is None:
            options = [self.tokens(t, lat, size) for t in {tier, None}
                       for lat in {latency, None} for size in (prompt, 0)]
            found = tuple(max(rates) for rates in zip(*options, strict=True))
            if len(self._worst) < 64:  # tiers x latencies x thresholds: a handful of keys
                self._worst[key] = found
        return found

    def image_price(self, key: str | None) -> int | None:
        """Per image of ``key`` (``"<W>x<H>/<quality>"``): the smallest listed size of that
        quality that holds a W x H image ("up to 1024 x 1024"); when none does (or the size is
        not known), the dearest listed: an unknown size is never priced low."""
        if not self.image:
            return None
        found = self.image.get(key) if key else None
        if found is None and key:
            size, _, quality = key.partition("/")
            wanted = _sides(size)
            fits = [(sides[0] * sides[1], price) for k, price in self.image.items()
                    if k.partition("/")[2] == quality and wanted is not None
                    and (sides := _sides(k.partition("/")[0])) is not None
                    and wanted[0] <= sides[0] and wanted[1] <= sides[1]]
            if fits:
                found = min(fits)[1]
        if found is None:  # unknown size or quality: the dearest price listed
            found = max(self.image.values())
        return found

    def bill(self, usage: Usage, terms: Terms) -> int:
        """Atto-USD for a call's reported ``usage`` (a :class:`~.usage.Usage`) and ``terms``.

        The tier and latency are Bedrock's answer when it gave one, else what was asked.
        """
        tier = usage.service_tier if usage.service_tier is not None else terms.tier
        latency = usage.latency if usage.latency is not None else terms.latency
        read, write = usage.cache_read_tokens, usage.cache_write_tokens
        prompt = usage.input_tokens + read + write
        inp, out, r_rate, w_rate, w1h = self.tokens(tier, latency, prompt)
        one_hour = min(usage.cache_write_1h_tokens, write)
        total = (usage.input_tokens * inp + usage.output_tokens * out + read * r_rate
                 + (write - one_hour) * w_rate + one_hour * w1h)
        if usage.images or terms.video_seconds or terms.queries or terms.input_images:
            total += self._units(usage.images, terms.video_seconds, terms.queries,
                                 terms.input_images, terms.image_key)
        return total  # tokens x pico-USD per 1M tokens = atto-USD

    def worst(self, input_bound: int, output_bound: int, terms: Terms) -> int:
        """Atto-USD the request can cost at most, its prompt at most ``input_bound`` tokens and
        its output at most ``output_bound``: the prompt at the dearest input-side rate it could
        be billed at (a cache write — 1 hour if asked — can cost more than plain input)."""
        inp, out, read, write, w1h = self.worst_tokens(terms.tier, terms.latency, input_bound)
        dearest = max(inp, read, write, w1h if terms.cache_1h else 0)
        total = input_bound * dearest + output_bound * out
        if terms.images or terms.video_seconds or terms.queries or terms.input_images:
            total += self._units(terms.images, terms.video_seconds, terms.queries,
                                 terms.input_images, terms.image_key)
        return total

    def _units(self, images: int, seconds: int, queries: int, input_images: int,
               image_key: str | None) -> int:
        """Per-unit prices in atto-USD (units x pico-USD x 1M)."""
        total = 0
        if images:
            total += images * (self.image_price(image_key) or 0)
        if seconds and self.video is not None:
            total += seconds * self.video
        if queries and self.query is not None:
            total += queries * self.query
        if input_images and self.image_input is not None:
            total += input_images * self.image_input
        return total * _MILLION


def _sides(size: str) -> tuple[int, int] | None:
    """``"1280x720"`` -> (1280, 720), longest side first (an image fits either way round)."""
    width, _, height = size.partition("x")
    if not (width.isdigit() and height.isdigit()):
        return None
    return max(int(width), int(height)), min(int(width), int(height))
