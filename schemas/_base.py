"""The base every wire model derives from."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

# Rasa writes numbers as Python gives them: an int stays an int (1, not 1.0), so
# byte-compatible JSON needs int | float rather than a float that coerces.
Number = Annotated[int | float, Field(union_mode="smart")]
JsonDict = dict[str, Any]


class WireModel(BaseModel):
    """Frozen, strict pydantic model: what crosses a topic or a file boundary."""

    model_config = ConfigDict(
        frozen=True,
        strict=True,
        extra="ignore",
        populate_by_name=True,
    )
