"""How a change reaches production: in-region deployment strategy and cross-region waves.

In a region, ECS's native CANARY or LINEAR deployment shifts a share of traffic to the new revision
after a lifecycle hook has probed it (README: Shipping a change). Across regions, a server's
`candidate` image reaches `rollout.waves` one wave at a time; `estate promote` advances it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .fields import DigestImage, Region, Strict

Strategy = Literal["ROLLING", "CANARY", "LINEAR"]
# ECS shifts traffic itself: the service owns its listener rules and needs a lifecycle hook.
STAGED = ("CANARY", "LINEAR")


class InRegion(Strict):
    strategy: Strategy = Field("ROLLING", description="ECS deployment strategy in each region")
    canary_percent: float = Field(10.0, ge=0.1, le=100.0, description="CANARY: share of traffic first shifted")
    linear_step_percent: float = Field(10.0, ge=3.0, le=100.0, description="LINEAR: share shifted per step")
    step_bake_minutes: int = Field(10, ge=0, le=1440, description="CANARY/LINEAR: minutes between shifts")
    bake_minutes: int = Field(15, ge=0, le=1440, description="Minutes the old revision is kept after the "
                                                            "shift, to roll back to at once")


    @property
    def staged(self) -> bool:
        return self.strategy in STAGED


class Rollout(Strict):
    """Estate-wide: the default in-region strategy and the ordered waves of regions."""
    in_region: InRegion = Field(default_factory=InRegion)
    waves: list[list[Region]] = Field(default_factory=list, description="Ordered region sets a candidate "
                                                                        "reaches one at a time; default: one "
                                                                        "wave of every region")
    wave_bake_minutes: int = Field(60, ge=0, le=10080, description="Healthy minutes a wave needs before the "
                                                                    "next one")


def in_region_of(server_rollout: InRegion | None, estate: Rollout) -> InRegion:
    """A server's in-region settings: its own, else the estate's."""
    return server_rollout or estate.in_region


def test_priority(route_priority: int) -> int:
    """The test listener rule of a CANARY/LINEAR server: just before its route, which it must precede
    (both match the server's path; the test rule also needs the test header from inside the VPC)."""
    return route_priority - 1


class Candidate(Strict):
    """A server's next image, on its way through the waves."""
    image: DigestImage
    waves_reached: int = Field(1, ge=1, description="How many waves (from the first) run the candidate")
