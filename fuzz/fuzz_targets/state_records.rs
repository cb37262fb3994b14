//! Arbitrary bytes through the decoders of every record the state store
//! keeps (each table's value is one of these, as JSON), and of `owner.json`.
//! None may panic; a record that decodes must also encode, and decode again
//! to the same value (the store writes back what it reads).
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use serde::Serialize;
use stackpipe_state::{
    GateDecision, JobRecord, JournalEntry, LockHolder, LogLine, OwnerInfo, ResourceKey, ResourceRecord, RunRecord,
};

fn round_trip<T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug>(bytes: &[u8]) {
    let Ok(value) = serde_json::from_slice::<T>(bytes) else { return };
    let encoded = serde_json::to_vec(&value).expect("a decoded record encodes");
    let again: T = serde_json::from_slice(&encoded).expect("an encoded record decodes");
    assert_eq!(value, again, "a record changed through encode and decode");
}

fuzz_target!(|data: &[u8]| {
    round_trip::<RunRecord>(data);
    round_trip::<ResourceRecord>(data);
    round_trip::<ResourceKey>(data);
    round_trip::<JobRecord>(data);
    round_trip::<LogLine>(data);
    round_trip::<JournalEntry>(data);
    round_trip::<GateDecision>(data);
    round_trip::<LockHolder>(data);
    round_trip::<OwnerInfo>(data);
    // The untyped fields (a resource's state, outputs and attributes).
    let _ = serde_json::from_slice::<serde_json::Value>(data);
});
