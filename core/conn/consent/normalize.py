"""Normalising personal identifiers before hashing, as ad platforms match them.

Rules follow Meta Custom Audiences
(https://developers.facebook.com/docs/marketing-api/audiences/guides/custom-audiences#hash)
and Google Customer Match
(https://developers.google.com/google-ads/api/docs/remarketing/audience-segments/customer-match/get-started#prepare_data):
an identifier must be normalised exactly as the platform does, or the SHA-256 digests
never match. Every normaliser is vectorised (``pyarrow.compute``) and maps
an empty result to null, so a blank value never becomes the hash of the empty string.

=========  ===================================================================
kind       rule
=========  ===================================================================
email      trim, lowercase
phone      digits only, "(0)" trunk marks and leading zeros dropped; a number not
           written with "+" or "00" is national and gets ``country_code`` prefixed
           (when configured); ``phone_format: e164`` adds "+" (Google)
name       lowercase, letters only (Meta FN/LN; UTF-8 letters kept)
first_name / last_name: as name
city       lowercase, letters only
state      lowercase, letters only
zip        lowercase, blanks removed, US ZIP+4 cut at "-"
country    lowercase letters, first two (ISO 3166-1 alpha-2)
gender     lowercase, first letter (m / f)
dob        digits only (YYYYMMDD)
dob_year   digits only (Meta DOBY)
dob_month  digits only, one digit zero-padded: ``1`` -> ``01`` (Meta DOBM)
dob_day    digits only, one digit zero-padded (Meta DOBD)
first_initial  ASCII letters only, lowercase: ``M.`` -> ``m`` (Meta FI)
address    trim, lowercase, runs of blanks collapsed
ip         trim, lowercase
text       trim, lowercase (the default for any other kind)
raw        unchanged
=========  ===================================================================
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def _str(arr: pa.Array) -> pa.Array:
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if not pa.types.is_string(arr.type):
        arr = arr.cast(pa.string())
    return arr


def _blank_to_null(arr: pa.Array) -> pa.Array:
    if not len(arr) or not isinstance(arr, pa.Array) or arr.type != pa.string():
        return _blank_to_null_by_length(arr)
    # Empty strings are equal neighbouring offsets: one pass over the offsets finds
    # whether there are any (the usual case: none, and no copy of the strings).
    offsets = np.frombuffer(arr.buffers()[1], np.int32, count=len(arr) + 1,
                            offset=arr.offset * 4)
    if not (offsets[1:] == offsets[:-1]).any():
        return arr
    return _blank_to_null_by_length(arr)


def _blank_to_null_by_length(arr: pa.Array) -> pa.Array:
    blank = pc.equal(pc.utf8_length(arr), 0)
    if not pc.any(blank).as_py():
        return arr
    return pc.if_else(blank, pa.scalar(None, arr.type), arr)


def text(arr: pa.Array, **_: Any) -> pa.Array:
    """Trim and lowercase."""
    return _blank_to_null(pc.utf8_lower(pc.utf8_trim_whitespace(_str(arr))))


def email(arr: pa.Array, **_: Any) -> pa.Array:
    """E-mail: trim and lowercase (Meta EMAIL, Google hashed_email)."""
    return text(arr)


def phone(arr: pa.Array, *, country_code: str | int | None = None,
          phone_format: str = "digits", **_: Any) -> pa.Array:
    """Phone to E.164 digits: ``"+44 (0)20 7946 0958"`` -> ``"442079460958"``; with
    ``country_code="1"``, ``"(650) 555-1234"`` -> ``"16505551234"``. ``phone_format:
    e164`` prefixes "+" (Google Customer Match)."""
    s = pc.utf8_trim_whitespace(_str(arr))
    s = pc.replace_substring(s, "(0)", "")
    international = pc.or_(pc.starts_with(s, "+"), pc.starts_with(s, "00"))
    digits = pc.replace_substring_regex(s, r"[^0-9]", "")
    digits = pc.replace_substring_regex(digits, r"^0+", "")
    if country_code:
        cc = str(country_code).lstrip("+").lstrip("0")
        national = pc.binary_join_element_wise(pa.scalar(cc), digits, "")
        digits = pc.if_else(international, digits, national)
        # A number that was only zeros or symbols stays empty, not just the country code.
        digits = pc.if_else(pc.equal(pc.utf8_length(
            pc.replace_substring_regex(s, r"[^1-9]", "")), 0), pa.scalar(""), digits)
    digits = _blank_to_null(digits)
    if phone_format == "e164":
        digits = pc.binary_join_element_wise(pa.scalar("+"), digits, "")
    return digits


def letters(arr: pa.Array, **_: Any) -> pa.Array:
    """Lowercase, letters only (UTF-8 letters kept): Meta FN, LN, CT, ST."""
    return _blank_to_null(pc.replace_substring_regex(pc.utf8_lower(_str(arr)), r"[^\p{L}]", ""))


def zip_code(arr: pa.Array, **_: Any) -> pa.Array:
    """Postal code: lowercase, no blanks, ``12345-6789`` -> ``12345``."""
    s = pc.replace_substring_regex(pc.utf8_lower(_str(arr)), r"\s+", "")
    return _blank_to_null(pc.replace_substring_regex(s, r"^([0-9]{5})-[0-9]{4}$", r"\1"))


def country(arr: pa.Array, **_: Any) -> pa.Array:
    """Country as ISO 3166-1 alpha-2, lowercase (first two letters)."""
    return pc.utf8_slice_codeunits(letters(arr), 0, 2)


def gender(arr: pa.Array, **_: Any) -> pa.Array:
    """Gender initial: ``Female`` -> ``f``."""
    return pc.utf8_slice_codeunits(letters(arr), 0, 1)


def dob(arr: pa.Array, **_: Any) -> pa.Array:
    """Date of birth, digits only; dates and timestamps as YYYYMMDD."""
    if pa.types.is_temporal(arr.type):
        return pc.strftime(arr, format="%Y%m%d")
    return _blank_to_null(pc.replace_substring_regex(_str(arr), r"[^0-9]", ""))


#: What facebook-business strips from both ends of every Custom Audience key before it
#: normalises it (``CustomAudienceMixin.format_params``).
_META_STRIP = " \t\r\n\0\x0b."


def _meta_digits(arr: pa.Array, part: str, pad: bool) -> pa.Array:
    if pa.types.is_temporal(arr.type):
        return pc.strftime(arr, format=part)
    digits = pc.replace_substring_regex(_str(arr), r"[^0-9]", "")
    if pad:  # exactly one digit gets a leading zero, as the SDK does
        digits = pc.if_else(pc.equal(pc.utf8_length(digits), 1),
                            pc.binary_join_element_wise(pa.scalar("0"), digits, ""), digits)
    return _blank_to_null(digits)


def dob_year(arr: pa.Array, **_: Any) -> pa.Array:
    """Birth year, digits only (Meta DOBY); dates give their year."""
    return _meta_digits(arr, "%Y", pad=False)


def dob_month(arr: pa.Array, **_: Any) -> pa.Array:
    """Birth month as Meta's DOBM: digits, one digit zero-padded (``1`` -> ``01``)."""
    return _meta_digits(arr, "%m", pad=True)


def dob_day(arr: pa.Array, **_: Any) -> pa.Array:
    """Birth day as Meta's DOBD: digits, one digit zero-padded (``7`` -> ``07``)."""
    return _meta_digits(arr, "%d", pad=True)


def first_initial(arr: pa.Array, **_: Any) -> pa.Array:
    """First initial as Meta's FI (and facebook-business): blanks and periods trimmed,
    lowercase, ASCII letters only: ``M.`` -> ``m``."""
    s = pc.utf8_lower(pc.utf8_trim(_str(arr), characters=_META_STRIP))
    return _blank_to_null(pc.replace_substring_regex(s, r"[^a-z]", ""))


def address(arr: pa.Array, **_: Any) -> pa.Array:
    """Street address: trim, lowercase, collapse runs of blanks."""
    return text(pc.replace_substring_regex(_str(arr), r"\s+", " "))


def raw(arr: pa.Array, **_: Any) -> pa.Array:
    """No normalisation (values hashed as given, e.g. an external id)."""
    return _str(arr)


NORMALIZERS: dict[str, Callable[..., pa.Array]] = {
    "email": email, "phone": phone, "name": letters, "first_name": letters,
    "last_name": letters, "city": letters, "state": letters, "zip": zip_code,
    "postal_code": zip_code, "country": country, "gender": gender, "dob": dob,
    "dob_year": dob_year, "dob_month": dob_month, "dob_day": dob_day,
    "first_initial": first_initial,
    "address": address, "ip": text, "text": text, "raw": raw,
}


def normalizer(kind: str | None) -> Callable[..., pa.Array]:
    """The normaliser for a personal-data kind (``text`` for kinds without a rule)."""
    return NORMALIZERS.get(kind or "text", text)


def normalize(arr: pa.Array, kind: str | None, **options: Any) -> pa.Array:
    """Normalise ``arr`` as identifiers of ``kind`` (see the table above)."""
    return normalizer(kind)(arr, **options)


def mask(arr: pa.Array, kind: str | None = None, **_: Any) -> pa.Array:
    """Mask a value for display: e-mails keep the first letter and the domain
    (``j***@example.com``); other values keep their last two characters (``***34``),
    short ones (four characters or fewer) become ``***``."""
    s = pc.utf8_trim_whitespace(_str(arr))
    stars = pa.scalar("***")
    if kind == "email":
        at = pc.find_substring(s, "@")
        domain = pc.replace_substring_regex(s, r"^[^@]*@", "")
        masked = pc.binary_join_element_wise(pc.utf8_slice_codeunits(s, 0, 1), stars,
                                             pa.scalar("@"), domain, "")
        return pc.if_else(pc.greater(at, 0), masked, stars.cast(pa.string()))
    tail = pc.utf8_slice_codeunits(s, -2)
    long = pc.greater(pc.utf8_length(s), 4)
    return pc.if_else(long, pc.binary_join_element_wise(stars, tail, ""),
                      pc.if_else(pc.is_null(s), pa.scalar(None, pa.string()), stars))
