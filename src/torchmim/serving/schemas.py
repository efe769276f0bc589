"""The service's JSON requests and responses (pydantic).

Requests are strict: an unknown field, a string where a number belongs, NaN or Infinity (which
Python's JSON parser accepts) are refused with a 422 before the model is touched. Rows are flat
lists of numbers (an image row is its C·H·W pixels in row-major order).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["DecodeRequest", "DecodeResponse", "EncodeRequest", "EncodeResponse",
           "InterpolateRequest", "InterpolateResponse", "ReconstructRequest",
           "ReconstructResponse", "SampleRequest", "SampleResponse"]

Rows = list[list[float]]
_MAX_SEED = 2**63 - 1


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


# The shared fields are declared once, in these bases. Pydantic lists a base's fields before the
# subclass's own, so in the schema they come first (``seed, sample, x`` where it was ``x, sample,
# seed``); names, types, defaults and checks are those of the fields they replace.
class _SeededRequest(_Request):
    """A request that may draw at random: ``seed`` makes its draws reproducible."""

    seed: int | None = Field(default=None, ge=0, le=_MAX_SEED,
                             description="seeds the draws (reproducible)")


class _MeanOrDrawRequest(_SeededRequest):
    """A request answered with means, or with one draw each when ``sample`` is true."""

    sample: bool = False


class _RowsRequest(_MeanOrDrawRequest):
    """A request on rows ``x`` of the data."""

    x: Rows = Field(min_length=1)


class EncodeRequest(_RowsRequest):
    """Rows ``x`` → their codes (posterior means; ``sample``: one draw z ∼ q(z|x) each)."""


class EncodeResponse(BaseModel):
    z: Rows


class DecodeRequest(_MeanOrDrawRequest):
    """Codes ``z`` → rows (decoder means E[x|z]; ``sample``: one draw x ∼ p(x|z) each)."""

    z: Rows = Field(min_length=1)


class DecodeResponse(BaseModel):
    x: Rows


class ReconstructRequest(_RowsRequest):
    """Rows ``x`` → x → z → x̃, through the means (``sample``: through draws)."""


class ReconstructResponse(BaseModel):
    x: Rows
    z: Rows


class SampleRequest(_SeededRequest):
    """``n`` new rows: z ∼ p(z), then the decoder mean (``mean: false``: a draw x ∼ p(x|z))."""

    n: int = Field(ge=1)
    mean: bool = True


class SampleResponse(BaseModel):
    x: Rows
    z: Rows


class InterpolateRequest(_Request):
    """Paths from ``start[i]`` to ``end[i]`` (rows, or codes with ``codes: true``) in ``steps``
    points, straight in z (``linear``) or along the prior's geometry (``spherical``,
    ``quantile``)."""

    start: Rows = Field(min_length=1)
    end: Rows = Field(min_length=1)
    steps: int = Field(default=8, ge=2)
    method: Literal["linear", "spherical", "quantile"] = "linear"
    codes: bool = False
    seed: int = Field(default=0, ge=0, le=_MAX_SEED)


class InterpolateResponse(BaseModel):
    z: list[Rows]
    x: list[Rows]
    t: list[float]
