//! Test support for secondpass: an in-process Qdrant REST double ([`qdrant_double`]).

pub mod qdrant_double;
