//! InfluxDB: line-protocol encoding, the v1/v2 HTTP client, the buffered
//! writer and InfluxQL reads.

mod buffer;
pub mod line;
pub(crate) mod query;
pub mod write;

pub use buffer::{Writer, WriterConfig, WriterHandle};
pub use line::{FieldValue, Point};
pub use write::{ApiChoice, InfluxClient, InfluxConfig};
