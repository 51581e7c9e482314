pub mod qdrant_double;
