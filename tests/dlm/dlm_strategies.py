"""Shared hypothesis strategies and an independent invariant checker for the DLM tests."""

from __future__ import annotations

from hypothesis import strategies as st

from ampgate.dlm import (
    ChargerReading,
    ChargerSpec,
    EngineSettings,
    Group,
    Measurements,
    MeterLocation,
    MeterReading,
    MeterSpec,
    Rotation,
    Site,
    VehicleState,
    check_site,
)

TOL = 1e-6
amps = st.floats(min_value=0, max_value=80, allow_nan=False).map(lambda x: round(x, 1))


@st.composite
def sites(draw, max_chargers: int = 8) -> Site:
    """Random valid site: a 1..3-level tree of fuses, meters, rotated 1-/3-phase chargers."""
    groups = []
    levels = draw(st.integers(1, 3))

    def group(gid: str, parent: str | None) -> Group:
        limit = draw(st.tuples(*[st.integers(10, 100)] * 3))
        op = draw(st.none() | st.just(tuple(max(0, x - draw(st.integers(0, 10))) for x in limit)))
        return Group(
            id=gid,
            limit=tuple(float(x) for x in limit),
            parent=parent,
            operator_limit=op,
            headroom=draw(st.tuples(*[st.integers(0, 5).map(float)] * 3)),
            fallback_load=draw(st.tuples(*[st.integers(0, 40).map(float)] * 3)),
            power_cap_kw=draw(st.none() | st.integers(5, 60).map(float)),
            max_imbalance=draw(st.none() | st.integers(6, 32).map(float)),
        )

    groups.append(group("main", None))
    frontier = ["main"]
    for level in range(1, levels):
        nxt = []
        for parent in frontier:
            for i in range(draw(st.integers(0, 2))):
                gid = f"{parent}.{level}{i}"
                groups.append(group(gid, parent))
                nxt.append(gid)
        frontier = nxt or frontier
    gids = [g.id for g in groups]
    meters = []
    for gid in draw(st.lists(st.sampled_from(gids), max_size=2, unique=True)):
        meters.append(MeterSpec(f"m-{gid}", gid, draw(st.sampled_from(list(MeterLocation)))))
    chargers = []
    for i in range(draw(st.integers(1, max_chargers))):
        lo = draw(st.integers(0, 10))
        hi = draw(st.integers(max(6, lo), 32))
        wired = draw(st.sampled_from([(0, 1, 2), (0, 1, 2), (0,), (1,), (2,)]))
        chargers.append(
            ChargerSpec(
                id=f"c{i}",
                group=draw(st.sampled_from(gids)),
                rotation=draw(st.sampled_from(list(Rotation))),
                wired_phases=wired,
                min_current=lo,
                max_current=hi,
                phase_change_possible=draw(st.booleans()),
                priority=draw(st.integers(0, 2)),
                failsafe_current=draw(st.sampled_from([0, 6, 8, 10, 16])),
            )
        )
    # every reading is taken at `now` here (no lag): the estimate is then meter − chargers
    settings = EngineSettings(meter_lag_allowance_s=0.0)
    return check_site(Site(tuple(groups), tuple(chargers), tuple(meters), settings))


@st.composite
def measurements(draw, site: Site, now: float) -> Measurements:
    """Random readings: meters fresh/stale/partial/missing, chargers online or not, any state."""
    meters = {}
    for meter in site.meters:
        kind = draw(st.sampled_from(["fresh", "fresh", "stale", "partial", "missing"]))
        if kind == "missing":
            continue
        cur = [draw(amps), draw(amps), draw(amps)]
        if kind == "partial":
            cur[draw(st.integers(0, 2))] = None
        # fresh readings are simultaneous with the chargers' (timing is test_dlm_estimate's)
        age = 0.0 if kind != "stale" else draw(st.floats(6, 30))
        meters[meter.id] = MeterReading(tuple(cur), now - age)
    chargers = {}
    for c in site.chargers:
        if draw(st.integers(0, 9)) == 0:
            chargers[c.id] = ChargerReading(online=False)
            continue
        # now and then current on a terminal the site file does not list as wired (miswired)
        cur = tuple(
            draw(st.floats(0, 34).map(lambda x: round(x, 1)))
            if p in c.wired_phases or draw(st.integers(0, 9)) == 0
            else 0.0
            for p in range(3)
        )
        chargers[c.id] = ChargerReading(
            online=True,
            currents=cur,
            vehicle=draw(st.sampled_from(list(VehicleState))),
            timestamp=now,
            last_setpoint=draw(st.none() | st.sampled_from([0, 6, 10, 16, 32])),
            max_current=draw(st.none() | st.integers(0, 32)),
        )
    return Measurements(meters=meters, chargers=chargers)
