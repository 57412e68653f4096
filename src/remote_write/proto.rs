//! The remote-write 1.0 wire format: the four protobuf messages of Prometheus' `prompb`
//! (`remote.proto` `WriteRequest`, `types.proto` `TimeSeries`, `Label`, `Sample`), written
//! by hand with prost's derive (no protoc at build time), and the snappy block framing of
//! the request body.
//!
//! Field numbers are Prometheus': `WriteRequest.timeseries = 1` (2 is reserved, 3 is
//! metadata, not sent); `TimeSeries.labels = 1`, `samples = 2`; `Label.name = 1`,
//! `value = 2`; `Sample.value = 1` (double), `timestamp = 2` (int64 milliseconds).

use prost::Message;

/// `prometheus.WriteRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    /// The series, each with its samples.
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// `prometheus.TimeSeries`: labels sorted by name, samples oldest first.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    /// `__name__` and the other labels, sorted by name.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// The samples, in time order.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

/// `prometheus.Label`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Label {
    /// The label's name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Its value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `prometheus.Sample`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    /// The value.
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Unix milliseconds.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// The request body: the protobuf encoding, compressed with snappy's block format (not the
/// framed stream format), as the protocol requires.
pub fn encode(request: &WriteRequest) -> Result<Vec<u8>, snap::Error> {
    snap::raw::Encoder::new().compress_vec(&request.encode_to_vec())
}

/// Reads a body back (tests, and a receiver double).
pub fn decode(body: &[u8]) -> Result<WriteRequest, String> {
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| format!("not snappy block data: {e}"))?;
    WriteRequest::decode(&raw[..]).map_err(|e| format!("not a WriteRequest: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one() -> WriteRequest {
        WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![
                    Label {
                        name: "__name__".into(),
                        value: "up".into(),
                    },
                    Label {
                        name: "job".into(),
                        value: "a".into(),
                    },
                ],
                samples: vec![Sample {
                    value: 1.0,
                    timestamp: 1000,
                }],
            }],
        }
    }

    /// The protobuf bytes are Prometheus' field numbers and wire types, byte for byte
    /// (written out by hand from types.proto), and the body reads back.
    #[test]
    fn encoding_matches_a_known_byte_string() {
        let expected: Vec<u8> = vec![
            0x0a, 0x28, // WriteRequest.timeseries (1, length-delimited), 40 bytes
            0x0a, 0x0e, // TimeSeries.labels (1), 14 bytes
            0x0a, 0x08, b'_', b'_', b'n', b'a', b'm', b'e', b'_', b'_', // name (1)
            0x12, 0x02, b'u', b'p', // value (2)
            0x0a, 0x08, // labels, 8 bytes
            0x0a, 0x03, b'j', b'o', b'b', 0x12, 0x01, b'a', //
            0x12, 0x0c, // TimeSeries.samples (2), 12 bytes
            0x09, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f, // value (1, 64-bit): 1.0
            0x10, 0xe8, 0x07, // timestamp (2, varint): 1000
        ];
        assert_eq!(one().encode_to_vec(), expected);
        let body = encode(&one()).unwrap();
        // Snappy block format: the uncompressed length as a varint comes first.
        assert_eq!(body[0] as usize, expected.len());
        assert_eq!(decode(&body).unwrap(), one());
        assert!(decode(b"\xff\xff\xff").is_err());
    }
}
