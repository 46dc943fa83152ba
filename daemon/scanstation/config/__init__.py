"""Configuration: typed, strict TOML (unknown keys are errors) + SCANSTATION_<SECTION>_<KEY>.

One module per group of sections (station, sources, analysis, network, gpio, outputs,
industrial); the loader assembles ``Config`` and applies environment overrides; docs.py
renders the reference.
Loaded once by the CLI and passed down. May import: model and the pure helpers its validators
use (barcode.decode formats, outputs.format/match compile checks); never services, store,
publish or web.
"""

from scanstation.config.analysis import ClassifierConfig, QrAnalysisConfig
from scanstation.config.base import ConfigError
from scanstation.config.gpio import BeepPattern, GpioConfig, RejectReason
from scanstation.config.industrial import (
    ModbusConfig,
    NoReadImagesConfig,
    ObjectWindowConfig,
    OpcUaConfig,
    QualityConfig,
)
from scanstation.config.loader import Config, load_config, parse_config
from scanstation.config.network import HttpConfig, MqttConfig, TlsConfig
from scanstation.config.outputs import (
    KeyboardGadgetOutputConfig,
    MatchRules,
    OutputFilter,
    SerialOutputConfig,
    WebhookOutputConfig,
    output_name,
    unique_output_names,
)
from scanstation.config.sources import (
    CameraSourceConfig,
    HidSourceConfig,
    ReplaySourceConfig,
    SerialSourceConfig,
    SourceConfig,
    StdinSourceConfig,
)

__all__ = [
    "BeepPattern",
    "CameraSourceConfig",
    "ClassifierConfig",
    "Config",
    "ConfigError",
    "GpioConfig",
    "HidSourceConfig",
    "HttpConfig",
    "KeyboardGadgetOutputConfig",
    "MatchRules",
    "ModbusConfig",
    "MqttConfig",
    "NoReadImagesConfig",
    "ObjectWindowConfig",
    "OpcUaConfig",
    "OutputFilter",
    "QrAnalysisConfig",
    "QualityConfig",
    "RejectReason",
    "ReplaySourceConfig",
    "SerialOutputConfig",
    "SerialSourceConfig",
    "SourceConfig",
    "StdinSourceConfig",
    "TlsConfig",
    "WebhookOutputConfig",
    "load_config",
    "output_name",
    "parse_config",
    "unique_output_names",
]
