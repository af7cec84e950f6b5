

pub mod otlp;
