//! HTTP: serves the metrics registry (placeholder, being written).
