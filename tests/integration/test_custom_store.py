"""The state store plug-in point (issue 6): a node built with the
application's own store (examples/custom_store) serves clients through it."""

import json
import os
import unittest

from harness import HarnessMixin, wait_until

BINARY = os.environ.get("WSC_CUSTOM_STORE_BINARY",
                        "build/examples/wsc-custom-store-node")


class CustomStoreTest(HarnessMixin, unittest.TestCase):
    def test_bindings_go_through_the_custom_store(self):
        path = BINARY if os.path.isabs(BINARY) else os.path.join(
            os.path.dirname(__file__), "..", "..", BINARY)
        node = self.start_node(binary=os.path.abspath(path))
        alice = node.ws("alice")
        bob = node.ws("bob")
        self.assertDelivers(alice, bob, "bob", "via custom")
        self.assertEqual(node.presence(["alice", "zed"]), {"alice": True, "zed": False})
        bob.close()

        def ops():
            out = []
            for line in node.log_text().splitlines():
                if line.startswith("{"):
                    e = json.loads(line)
                    out.append((e["op"], e["uid"]))
            return out

        wait_until(lambda: ("unbind", "bob") in ops(), 5, what="unbind of bob")
        self.assertEqual(sorted(ops()), [("bind", "alice"), ("bind", "bob"), ("unbind", "bob")])


if __name__ == "__main__":
    unittest.main()
