// A node that also speaks the `line` frame codec (line_codec.hpp):
//
//   build/examples/wsc-codec-node --listen=127.0.0.1:8080 --frame-codec=line
//   websocat 'ws://127.0.0.1:8080/ws?uid=ann'
//   <- welcome {"type":"welcome","uid":"ann",...}
//   -> ping {"id":1}
//   <- pong {"type":"pong","id":1}

#include "app/run.hpp"
#include "line_codec.hpp"

#include <memory>

int main(int argc, char** argv) {
  wsc::node_customization custom;
  custom.codecs = [](wsc::codec_registry& codecs) {
    codecs.add("line", [](const wsc::options&) {
      return std::make_shared<example::line_codec>();
    });
  };
  return wsc::run_node(argc, argv, custom);
}
