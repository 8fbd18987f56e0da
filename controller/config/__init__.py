"""The run configuration: TOML validated by pydantic, with errors that name key, value and rule.

One module per part of the file: `run` ([run] and the speed parser), `loops`, `schedule`,
`safety` (quality, interlocks, safe state), `reactor` ([[reactor]]), `remote` ([mqtt],
[[operator]]), `loading` (the root table, load and parse), `fleet` (N copies of one reactor);
`hard_limits` (the interlocks' trip points, as data) and `safety_check` (the safe state and
the setpoints against those limits and the alarms: errors; what is allowed but unsafe:
warnings). The alarm tables' models are the alarms' own (controller/alarms/spec.py). Import
from here: `from controller.config import ...`.
"""
from controller.config.fleet import fleet
from controller.config.loading import (
    DEFAULT_CONFIG,
    Config,
    ConfigError,
    load_config,
    parse_config,
    parse_toml,
    read_toml_text,
    validate_config,
)
from controller.config.loops import LoopConfig
from controller.config.reactor import ReactorConfig
from controller.config.remote import MqttConfig, OperatorConfig
from controller.config.run import RunConfig, format_speed, parse_speed
from controller.config.safety import (
    InterlocksConfig,
    QualityConfig,
    SupplyLostConfig,
    default_safe_state,
)
from controller.config.safety_check import SAFE_GAS_PCT, safety_warnings
from controller.config.schedule import Bolus, PerfusionPoint, ScheduleConfig

__all__ = ["DEFAULT_CONFIG", "SAFE_GAS_PCT", "Bolus", "Config", "ConfigError", "InterlocksConfig",
           "LoopConfig", "MqttConfig", "OperatorConfig", "PerfusionPoint", "QualityConfig",
           "ReactorConfig", "RunConfig", "ScheduleConfig", "SupplyLostConfig",
           "default_safe_state", "fleet", "format_speed", "load_config", "parse_config",
           "parse_speed", "parse_toml", "read_toml_text", "safety_warnings", "validate_config"]
