"""Constrained field types that protect money: finite positive prices, non-negative sizes, bounded text."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints

SYMBOL_PATTERN = r"^[A-Z0-9]{1,20}/[A-Z0-9]{1,20}(:[A-Z0-9]{1,20})?$"  # ccxt unified: BASE/QUOTE[:SETTLE]
NAME_PATTERN = r"^[a-z][a-z0-9_\-]{0,63}$"

Price = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Quantity = Annotated[float, Field(ge=0, allow_inf_nan=False)]
PositiveQuantity = Annotated[float, Field(gt=0, allow_inf_nan=False)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
Probability = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
EpochMs = Annotated[int, Field(ge=0, lt=10**14)]
EpochNs = Annotated[int, Field(ge=0, lt=10**20)]
Symbol = Annotated[str, StringConstraints(pattern=SYMBOL_PATTERN)]
Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]  # agents, exchanges, strategies, codes
Identifier = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_\-:.]{1,64}$")]
ShortText = Annotated[str, StringConstraints(max_length=200)]
Text = Annotated[str, StringConstraints(max_length=2000)]

MAX_BATCH = 10_000
MAX_LIST = 64
