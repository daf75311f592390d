// The wscluster node binary: the library plus its built-in behaviours.

#include "app/run.hpp"

int main(int argc, char** argv) {
  return wsc::run_node(argc, argv);
}
