"""The site configuration: one TOML file, validated at once, turned into the engine's values.

What must live here: the site file's schema (:mod:`.schema`), its one validator
(:mod:`.validate`) and the translation to the engine's frozen values (:mod:`.to_engine`). Nothing
here opens a device or a socket; the codec is used only to list the shipped register maps.
"""

from __future__ import annotations

from ampgate.config.schema import (
    MAX_CHARGING_CURRENT,
    MIN_CHARGING_CURRENT,
    PHASES,
    ROTATIONS,
    ChargerConfig,
    DlmConfig,
    GroupConfig,
    HttpConfig,
    LogConfig,
    MeterConfig,
    MqttConfig,
    SerialBusConfig,
    SiteConfig,
    SiteInfo,
    TcpBusConfig,
    site_phases,
)
from ampgate.config.validate import (
    check_config,
    check_config_data,
    check_config_text,
    load_config,
)

__all__ = [
    "MAX_CHARGING_CURRENT",
    "MIN_CHARGING_CURRENT",
    "PHASES",
    "ROTATIONS",
    "ChargerConfig",
    "DlmConfig",
    "GroupConfig",
    "HttpConfig",
    "LogConfig",
    "MeterConfig",
    "MqttConfig",
    "SerialBusConfig",
    "SiteConfig",
    "SiteInfo",
    "TcpBusConfig",
    "check_config",
    "check_config_data",
    "check_config_text",
    "load_config",
    "site_phases",
]
