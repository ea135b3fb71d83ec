//! Graph passes (the e-graph optimizer, fusion and scheduling arrive here).
