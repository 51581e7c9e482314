//! `[tracing]`: OpenTelemetry traces over OTLP/gRPC, off by default. The standard
//! `OTEL_*` variables, when set, win over the file (see [`TracingConfig::apply_otel_env`]).

use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError};

/// Which traces are kept, as `OTEL_TRACES_SAMPLER` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
pub enum Sampler {
    #[serde(rename = "always_on")]
    AlwaysOn,
    #[serde(rename = "always_off")]
    AlwaysOff,
    /// `ratio` of the traces, by trace id.
    #[serde(rename = "traceidratio")]
    TraceIdRatio,
    /// The client's decision when its `traceparent` carries one, else always on.
    #[default]
    #[serde(rename = "parentbased_always_on")]
    ParentBasedAlwaysOn,
    #[serde(rename = "parentbased_always_off")]
    ParentBasedAlwaysOff,
    #[serde(rename = "parentbased_traceidratio")]
    ParentBasedTraceIdRatio,
}

impl Sampler {
    fn parse(name: &str) -> Option<Sampler> {
        serde_json::from_value(serde_json::Value::String(name.trim().to_lowercase())).ok()
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TracingConfig {
    /// Export spans. Off: no exporter, no thread, no connection, and every span of
    /// secondpass is disabled at its call site.
    pub enabled: bool,
    /// The OTLP/gRPC collector (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`,
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`).
    pub endpoint: String,
    /// `service.name` of the spans (`OTEL_SERVICE_NAME`).
    pub service_name: String,
    /// `OTEL_TRACES_SAMPLER`.
    pub sampler: Sampler,
    /// The ratio of the `*traceidratio` samplers, 0 to 1 (`OTEL_TRACES_SAMPLER_ARG`).
    pub ratio: f64,
    /// Longest wait before a batch of spans is sent (`OTEL_BSP_SCHEDULE_DELAY`).
    pub batch_delay_ms: u64,
    /// Spans waiting to be sent; more are dropped (`OTEL_BSP_MAX_QUEUE_SIZE`).
    pub max_queue_size: usize,
    /// Budget of one export call (`OTEL_EXPORTER_OTLP_TIMEOUT`).
    pub timeout_ms: u64,
}

impl Default for TracingConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            endpoint: "http://localhost:4317".into(),
            service_name: "secondpass".into(),
            sampler: Sampler::default(),
            ratio: 1.0,
            batch_delay_ms: 5_000,
            max_queue_size: 2_048,
            timeout_ms: 10_000,
        }
    }
}

impl TracingConfig {
    /// Overrides keys with the standard OpenTelemetry variables set in `env`; a bad
    /// value is an error naming the variable.
    pub fn apply_otel_env(&mut self, env: &config::Map<String, String>) -> Result<(), ConfigError> {
        let var = |name: &str| env.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());
        let number = |name: &str| -> Result<Option<u64>, ConfigError> {
            var(name)
                .map(|v| {
                    v.parse()
                        .map_err(|_| invalid(name, format!("`{v}` is not a whole number")))
                })
                .transpose()
        };
        if var("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            self.enabled = false;
        }
        if let Some(v) =
            var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| var("OTEL_EXPORTER_OTLP_ENDPOINT"))
        {
            self.endpoint = v.to_string();
        }
        if let Some(v) = var("OTEL_SERVICE_NAME") {
            self.service_name = v.to_string();
        }
        if let Some(v) = var("OTEL_TRACES_SAMPLER") {
            self.sampler = Sampler::parse(v).ok_or_else(|| {
                invalid(
                    "OTEL_TRACES_SAMPLER",
                    format!("`{v}` is not one of always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off, parentbased_traceidratio"),
                )
            })?;
        }
        if let Some(v) = var("OTEL_TRACES_SAMPLER_ARG") {
            self.ratio = v.parse().map_err(|_| {
                invalid("OTEL_TRACES_SAMPLER_ARG", format!("`{v}` is not a number"))
            })?;
        }
        if let Some(ms) = number("OTEL_BSP_SCHEDULE_DELAY")? {
            self.batch_delay_ms = ms;
        }
        if let Some(n) = number("OTEL_BSP_MAX_QUEUE_SIZE")? {
            self.max_queue_size = n as usize;
        }
        if let Some(ms) =
            number("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT")?.or(number("OTEL_EXPORTER_OTLP_TIMEOUT")?)
        {
            self.timeout_ms = ms;
        }
        Ok(())
    }

    /// Checks every key, also when tracing is off (a typo shows before it is turned on).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let url: http::Uri = self.endpoint.parse().map_err(|e| {
            invalid(
                "tracing.endpoint",
                format!("`{}` is not a URL: {e}", self.endpoint),
            )
        })?;
        if url.scheme_str() != Some("http") || url.host().is_none() {
            return Err(invalid(
                "tracing.endpoint",
                format!(
                    "`{}` must be http://host:port (OTLP over gRPC without TLS: a collector on the node or in the cluster)",
                    self.endpoint
                ),
            ));
        }
        if self.service_name.trim().is_empty() {
            return Err(invalid("tracing.service_name", "must not be empty"));
        }
        if !(0.0..=1.0).contains(&self.ratio) {
            return Err(invalid("tracing.ratio", "must be between 0 and 1"));
        }
        for (key, ms) in [
            ("tracing.batch_delay_ms", self.batch_delay_ms),
            ("tracing.timeout_ms", self.timeout_ms),
        ] {
            if ms == 0 || ms > super::MAX_TIMEOUT_MS {
                return Err(invalid(
                    key,
                    format!("must be between 1 and {} (ms)", super::MAX_TIMEOUT_MS),
                ));
            }
        }
        if self.max_queue_size == 0 {
            return Err(invalid("tracing.max_queue_size", "must be greater than 0"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn env(vars: &[(&str, &str)]) -> config::Map<String, String> {
        vars.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn off_by_default_and_every_key_from_the_file() {
        let cfg = Config::from_toml("").unwrap();
        assert!(!cfg.tracing.enabled);
        let cfg = Config::from_toml(
            "[tracing]\nenabled = true\nendpoint = \"http://otel:4317\"\nsampler = \"parentbased_traceidratio\"\nratio = 0.25\nbatch_delay_ms = 100\n",
        )
        .unwrap();
        let t = cfg.tracing;
        assert!(t.enabled);
        assert_eq!(t.endpoint, "http://otel:4317");
        assert_eq!(t.sampler, Sampler::ParentBasedTraceIdRatio);
        assert_eq!((t.ratio, t.batch_delay_ms), (0.25, 100));
    }

    #[test]
    fn otel_variables_win_over_the_file() {
        let file = std::env::temp_dir().join(format!("sp-otel-{}.toml", std::process::id()));
        std::fs::write(
            &file,
            "[tracing]\nenabled = true\nendpoint = \"http://file:4317\"\nservice_name = \"file\"\n",
        )
        .unwrap();
        let cfg = Config::load_with_env(
            Some(&file),
            env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://generic:4317"),
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://traces:4317"),
                ("OTEL_SERVICE_NAME", "search-proxy"),
                ("OTEL_TRACES_SAMPLER", "traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", "0.1"),
                ("OTEL_BSP_SCHEDULE_DELAY", "250"),
                ("OTEL_EXPORTER_OTLP_TIMEOUT", "3000"),
            ]),
        )
        .unwrap();
        let t = &cfg.tracing;
        assert_eq!(
            t.endpoint, "http://traces:4317",
            "the signal's own variable first"
        );
        assert_eq!(t.service_name, "search-proxy");
        assert_eq!((t.sampler, t.ratio), (Sampler::TraceIdRatio, 0.1));
        assert_eq!((t.batch_delay_ms, t.timeout_ms), (250, 3000));
        let off = Config::load_with_env(Some(&file), env(&[("OTEL_SDK_DISABLED", "true")]));
        assert!(!off.unwrap().tracing.enabled);
        std::fs::remove_file(file).unwrap();
    }

    #[test]
    fn bad_values_name_the_key_or_variable() {
        let err = |text: &str| Config::from_toml(text).unwrap_err().to_string();
        assert!(err("[tracing]\nendpoint = \"https://otel:4317\"").contains("tracing.endpoint"));
        assert!(err("[tracing]\nendpoint = \"otel:4317\"").contains("tracing.endpoint"));
        assert!(err("[tracing]\nratio = 2.0").contains("tracing.ratio"));
        assert!(err("[tracing]\nbatch_delay_ms = 0").contains("tracing.batch_delay_ms"));
        assert!(err("[tracing]\nsampler = \"sometimes\"").contains("sampler"));
        let e = Config::load_with_env(None, env(&[("OTEL_TRACES_SAMPLER", "sometimes")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("OTEL_TRACES_SAMPLER"), "{e}");
        let e = Config::load_with_env(None, env(&[("OTEL_BSP_SCHEDULE_DELAY", "soon")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("OTEL_BSP_SCHEDULE_DELAY"), "{e}");
    }
}
