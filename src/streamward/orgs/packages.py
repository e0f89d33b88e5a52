"""Product packages an organisation may have (DOMAIN.md "Enabled packages").

Stored as a set of keys; Live Processing's sub-features are keys of their own
(``live_processing.recording``), so an organisation can hold some of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from streamward.errors import Forbidden


@dataclass(frozen=True)
class Package:
    key: str
    title: str
    features: tuple[tuple[str, str], ...] = field(default=())  # (key, title)


PACKAGES: tuple[Package, ...] = (
    Package(
        "live_processing",
        "Live Processing",
        (
            ("live_processing.thumbnail", "Thumbnail"),
            ("live_processing.motion_clip", "Motion Clip"),
            ("live_processing.recording", "Recording"),
            ("live_processing.live_replay", "Live Replay"),
        ),
    ),
    Package("h5live_player", "H5Live Player"),
    Package("webcaster", "Webcaster"),
    Package("transcoding", "Transcoding"),
    Package("secure_playback", "Secure Playback"),
    Package("vod", "Video on Demand (VOD)"),
    Package("metadata", "Metadata"),
)

PACKAGE_KEYS: frozenset[str] = frozenset(
    [p.key for p in PACKAGES] + [key for p in PACKAGES for key, _ in p.features]
)
TITLES: dict[str, str] = {p.key: p.title for p in PACKAGES} | {
    key: title for p in PACKAGES for key, title in p.features
}


def normalise(keys: list[str] | set[str] | frozenset[str]) -> list[str]:
    """Validate package keys; enabling Live Processing alone enables all four sub-features, and a
    sub-feature implies its package. Raises ValueError naming the first unknown key."""
    chosen = set(keys)
    for key in chosen:
        if key not in PACKAGE_KEYS:
            raise ValueError(f"unknown package {key!r}; known: {', '.join(sorted(PACKAGE_KEYS))}")
    live = next(p for p in PACKAGES if p.key == "live_processing")
    features = {k for k, _ in live.features}
    if "live_processing" in chosen and not chosen & features:
        chosen |= features
    if chosen & features:
        chosen.add("live_processing")
    return sorted(chosen)


def change(
    current: list[str],
    *,
    replace: list[str] | None = None,
    add: list[str] | None = None,
    remove: list[str] | None = None,
) -> list[str]:
    """The package set after an operator's change: ``replace`` it, then ``add`` and ``remove`` keys.

    Removing a package removes its sub-features; removing the last sub-feature of a package removes
    the package too (otherwise ``normalise`` would read the bare package as "all sub-features").
    Raises ValueError naming the first unknown key.
    """
    chosen = set(normalise(replace)) if replace is not None else set(current)
    chosen |= set(normalise(add or []))
    removing = set(remove or [])
    for key in removing:
        if key not in PACKAGE_KEYS:
            raise ValueError(f"unknown package {key!r}; known: {', '.join(sorted(PACKAGE_KEYS))}")
    for package in PACKAGES:
        features = {key for key, _ in package.features}
        if package.key in removing:
            removing |= features
        elif features and chosen & features and chosen & features <= removing:
            removing.add(package.key)
    return normalise(chosen - removing)


def describe(enabled: list[str]) -> list[dict[str, object]]:
    """All seven packages, each enabled or not, Live Processing with its sub-features."""
    have = set(enabled)
    out: list[dict[str, object]] = []
    for package in PACKAGES:
        features = [{"key": key, "title": title, "enabled": key in have} for key, title in package.features]
        out.append(
            {"key": package.key, "title": package.title, "enabled": package.key in have, "features": features}
        )
    return out


class UpgradeNeeded(Forbidden):
    code = "upgrade_needed"
    message = "Your organisation's packages do not include this feature."


def has_package(enabled: list[str], key: str) -> bool:
    if key not in PACKAGE_KEYS:
        raise ValueError(f"unknown package {key!r}")
    return key in enabled


def require_package(enabled: list[str], key: str) -> None:
    """The one gate for package features: refuse with 403 ``upgrade_needed`` naming the package.

    Raised after access control (a member who may not use the feature at all hears ``forbidden``,
    a stranger ``not_found``), so the answer only tells a permitted caller what to buy.
    """
    if not has_package(enabled, key):
        raise UpgradeNeeded(
            f"This needs the {TITLES[key]} package, which your organisation does not have.",
            details={"package": key, "title": TITLES[key]},
        )
