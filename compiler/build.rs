//! Generates the ONNX protobuf types from `proto/onnx.proto`, with protox
//! as the compiler so that no `protoc` needs to be installed.

fn main() {
    println!("cargo:rerun-if-changed=proto/onnx.proto");
    let fds = protox::compile(["proto/onnx.proto"], ["proto"]).expect("proto/onnx.proto compiles");
    prost_build::Config::new()
        .compile_fds(fds)
        .expect("generating Rust for onnx.proto");
}
