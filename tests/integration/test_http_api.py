"""HTTP API on the node's listener: /api/send, /api/broadcast, /healthz,
404, 400 on malformed bodies, the API key, /api/presence.

Run: /usr/bin/python3 -m unittest tests/integration/test_http_api.py
"""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import HarnessMixin, make_message_check  # noqa: E402


class HttpApiTest(HarnessMixin, unittest.TestCase):

    def setUp(self):
        self.node = self.start_node()

    def assertError400(self, status, body, what):
        self.assertEqual(status, 400, "%s: expected 400, got %s %r" % (what, status, body))
        self.assertIsInstance(body, dict, "%s: 400 body must be JSON {\"error\":...}: %r" % (what, body))
        self.assertIsInstance(body.get("error"), str, "%s: %r" % (what, body))
        self.assertTrue(body["error"], "%s: empty error text" % what)

    def test_api_send_reaches_every_connection_with_from_null(self):
        bob1, bob2 = self.node.ws(uid="bob"), self.node.ws(uid="bob")
        alice = self.node.ws(uid="alice")
        data = {"text": "from the backend", "n": 3}
        status, _, body = self.node.http("POST", "/api/send", {"to": ["bob"], "data": data})
        self.assertEqual(status, 200, body)
        self.assertIsInstance(body, dict, body)
        self.assertIs(body.get("ok"), True, body)
        check = make_message_check(self, None, "bob", data)  # "from" present and null
        for bob in (bob1, bob2):
            check(bob.wait_for(lambda f: f.get("type") == "message", 5, "message at bob"))
        self.assertNoFrame(alice, lambda f: f.get("type") == "message", 0.3, "message at alice")

    def test_api_send_to_offline_uid_is_still_ok(self):
        # Assumption: sending to a uid with no connection is not an error
        # (it may be stored for durable delivery); the answer is 200 ok.
        status, _, body = self.node.http("POST", "/api/send", {"to": ["nobody"], "data": 1})
        self.assertEqual(status, 200, body)
        self.assertIs(body.get("ok"), True, body)

    def test_api_broadcast_reaches_every_connection(self):
        clients = [self.node.ws(uid="alice"), self.node.ws(uid="bob"),
                   self.node.ws(uid="bob"), self.node.ws()]
        data = {"announcement": "maintenance at 5"}
        status, _, body = self.node.http("POST", "/api/broadcast", {"data": data})
        self.assertEqual(status, 200, body)
        self.assertIs(body.get("ok"), True, body)
        for c in clients:
            frame = c.wait_for(lambda f: f.get("type") == "broadcast", 5, "broadcast")
            self.assertEqual(frame["data"], data, frame)
            self.assertTs(frame)
            # Assumption: like /api/send, an API broadcast has no sender uid:
            # "from" is null when present.
            self.assertIsNone(frame.get("from"), frame)
        for c in clients:
            self.assertNoFrame(c, lambda f: f.get("type") == "broadcast", 0.2, "second broadcast")

    def test_healthz(self):
        status, _, body = self.node.http("GET", "/healthz")
        self.assertEqual(status, 200)
        self.assertEqual(body.strip() if isinstance(body, str) else body, "ok")

    def test_unknown_path_is_404(self):
        for method, path in (("GET", "/no/such/path"), ("GET", "/api/nosuch"),
                             ("POST", "/api/nosuch")):
            with self.subTest(method=method, path=path):
                status, _, body = self.node.http(method, path, {} if method == "POST" else None)
                self.assertEqual(status, 404, body)

    def test_malformed_json_body_is_400(self):
        for path in ("/api/send", "/api/broadcast"):
            with self.subTest(path=path):
                status, _, body = self.node.http("POST", path, b'{"to": ["bob"], "data": ',
                                                 headers={"Content-Type": "application/json"})
                self.assertError400(status, body, path + " with truncated JSON")

    def test_missing_or_wrong_fields_are_400(self):
        cases = [
            ("/api/send", {"data": 1}, "send without to"),
            # Assumption: "data" is required, as in the contract's request.
            ("/api/send", {"to": ["bob"]}, "send without data"),
            ("/api/send", {"to": 5, "data": 1}, "send with numeric to"),
            ("/api/send", [1, 2], "send with a JSON array body"),
            ("/api/broadcast", {}, "broadcast without data"),
        ]
        for path, body, what in cases:
            with self.subTest(what=what):
                status, _, answer = self.node.http("POST", path, body)
                self.assertError400(status, answer, what)
        # The node still works afterwards.
        bob = self.node.ws(uid="bob")
        status, _, body = self.node.http("POST", "/api/send", {"to": ["bob"], "data": "after"})
        self.assertEqual(status, 200, body)
        self.assertEqual(bob.wait_for(lambda f: f.get("type") == "message", 5)["data"], "after")

    def test_presence(self):
        self.node.ws(uid="alice")
        status, _, body = self.node.http("GET", "/api/presence?uids=alice,bob")
        self.assertEqual(status, 200, body)
        self.assertIsInstance(body, dict, body)
        self.assertEqual(body.get("online"), {"alice": True, "bob": False}, body)


class ApiKeyTest(HarnessMixin, unittest.TestCase):

    def setUp(self):
        self.node = self.start_node({"api-key": "secret"})

    def test_api_requires_bearer_key(self):
        bob = self.node.ws(uid="bob")   # WebSocket clients do not need the key
        send = {"to": ["bob"], "data": "k"}
        for headers, what in (({}, "no Authorization"),
                              ({"Authorization": "Bearer wrong"}, "wrong key"),
                              ({"Authorization": "Bearer secret2"}, "key with a suffix"),
                              ({"Authorization": "Bearer "}, "empty key"),
                              ({"Authorization": "Basic secret"}, "not Bearer")):
            with self.subTest(what=what):
                status, _, body = self.node.http("POST", "/api/send", send, headers=headers)
                self.assertEqual(status, 401, "%s: %s %r" % (what, status, body))
                status, _, body = self.node.http("GET", "/api/presence?uids=bob", headers=headers)
                self.assertEqual(status, 401, "%s (presence): %s %r" % (what, status, body))
        self.assertNoFrame(bob, lambda f: f.get("type") == "message", 0.3,
                           "message sent without a valid key")

        ok = {"Authorization": "Bearer secret"}
        status, _, body = self.node.http("POST", "/api/send", send, headers=ok)
        self.assertEqual(status, 200, body)
        self.assertIs(body.get("ok"), True, body)
        self.assertEqual(bob.wait_for(lambda f: f.get("type") == "message", 5)["data"], "k")
        self.assertEqual(self.node.presence(["bob"], headers=ok), {"bob": True})

    def test_healthz_needs_no_key(self):
        # Assumption: /healthz is for load balancers and is not part of the
        # keyed API.
        status, _, body = self.node.http("GET", "/healthz")
        self.assertEqual(status, 200, body)


if __name__ == "__main__":
    unittest.main()
