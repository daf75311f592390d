<?php
/**
 * A small client for the wscluster HTTP API (CONTRACT.md, sections 3 and 5).
 *
 * Plain PHP 8.2, no extensions beyond the default build (json, hash) and no
 * Composer packages: requests go through PHP's http:// stream wrapper
 * (`allow_url_fopen = On`, Debian's default). Any node of the cluster will
 * do; every call is cluster-wide.
 *
 *     require __DIR__ . '/Wscluster.php';
 *     $wsc = new Wscluster('http://127.0.0.1:8080', getenv('WSC_API_KEY') ?: null);
 *     $wsc->send('bob', ['text' => 'your order shipped']);         // ['ok' => true]
 *     $wsc->send(['bob', 'carol'], ['n' => 1], waitMs: 1000);        // with receipts
 *     $wsc->presence(['bob', 'carol']);                              // ['bob' => true, 'carol' => false]
 *
 * `data` is encoded with json_encode: a PHP list becomes a JSON array, an
 * associative array a JSON object. An empty object must be written
 * `new stdClass()` (or `(object) []`), because `[]` encodes as `[]`.
 *
 * Failures throw WsclusterException: getStatus() is the HTTP status (401 a
 * missing or wrong API key, 400 a malformed request, 413 too large, 503 the
 * state store unreachable, ...; 0 when the node could not be reached), and
 * getError() the node's `{"error": "..."}` text.
 */

declare(strict_types=1);

final class WsclusterException extends RuntimeException
{
    public function __construct(
        string $message,
        private readonly int $status = 0,
        private readonly mixed $body = null,
    ) {
        parent::__construct($message, $status);
    }

    /** The HTTP status of the answer; 0 when there was no answer. */
    public function getStatus(): int
    {
        return $this->status;
    }

    /** The decoded answer body (array when it was JSON, else the raw text). */
    public function getBody(): mixed
    {
        return $this->body;
    }

    /** The node's error text (`{"error": "..."}`), or null. */
    public function getError(): ?string
    {
        return is_array($this->body) && is_string($this->body['error'] ?? null)
            ? $this->body['error'] : null;
    }
}

final class Wscluster
{
    private string $baseUrl;

    /**
     * @param string      $baseUrl e.g. `http://127.0.0.1:8080` (any node's `listen`)
     * @param string|null $apiKey  the node's `api-key`, sent as `Authorization: Bearer`
     * @param float       $timeout seconds for connecting and reading one answer
     */
    public function __construct(string $baseUrl, private readonly ?string $apiKey = null,
                                private readonly float $timeout = 5.0)
    {
        if (!preg_match('#^https?://[^/]+#', $baseUrl)) {
            throw new InvalidArgumentException("base URL must be http(s)://host:port, got '$baseUrl'");
        }
        $this->baseUrl = rtrim($baseUrl, '/');
    }

    // -- messages ----------------------------------------------------------

    /**
     * `POST /api/send`: `data` to every connection of each uid, on any node
     * (receivers see `"from": null`). Durable unless the node lists `send`
     * in `volatile-types`: offline uids get it when they resume.
     *
     * @param string|string[] $to     one uid or a list of uids
     * @param int|null        $waitMs ask for receipts: the answer then holds
     *                                `receipts[uid] = ['connections' => n, 'stored' => bool]`
     * @param string|null     $idem   idempotency key (1-64 bytes): a retry of
     *                                this call with the same key is not delivered twice
     * @param string[]        $except connection ids that get nothing
     * @return array the node's answer, `['ok' => true, ...]`
     */
    public function send(string|array $to, mixed $data, ?int $waitMs = null, ?string $idem = null,
                         array $except = []): array
    {
        $body = ['to' => is_string($to) ? [$to] : array_values($to), 'data' => $data];
        return $this->post('/api/send', $this->withOptions($body, $waitMs, $idem, $except));
    }

    /** `POST /api/send` with `to_conn`: one connection (by its `welcome.conn`), on any node. */
    public function sendToConnection(string $conn, mixed $data, ?string $idem = null): array
    {
        return $this->post('/api/send', $this->withOptions(['to_conn' => $conn, 'data' => $data],
                                                           null, $idem, []));
    }

    /** `POST /api/publish`: `data` to every member of `group`. */
    public function publish(string $group, mixed $data, ?string $idem = null, array $except = []): array
    {
        return $this->post('/api/publish',
                           $this->withOptions(['group' => $group, 'data' => $data], null, $idem, $except));
    }

    /** `POST /api/broadcast`: `data` to every connection on every node (at most once). */
    public function broadcast(mixed $data, array $except = []): array
    {
        return $this->post('/api/broadcast', $this->withOptions(['data' => $data], null, null, $except));
    }

    // -- users and groups --------------------------------------------------

    /** `POST /api/disconnect`: closes all of `uid`'s connections, cluster-wide (close code 4001). */
    public function disconnect(string $uid): array
    {
        return $this->post('/api/disconnect', ['uid' => $uid]);
    }

    /**
     * `GET /api/presence?uids=...`
     *
     * @param string[] $uids
     * @return array<string, bool> uid => online
     */
    public function presence(array $uids): array
    {
        if ($uids === []) {
            return [];
        }
        $answer = $this->get('/api/presence?uids=' . rawurlencode(implode(',', $uids)));
        return $answer['online'] ?? [];
    }

    /** True when `uid` has at least one connection in the cluster. */
    public function isOnline(string $uid): bool
    {
        return (bool) ($this->presence([$uid])[$uid] ?? false);
    }

    /**
     * `GET /api/groups/<group>/members`
     *
     * @return string[] the member uids (at most the node's `members-limit`)
     */
    public function members(string $group): array
    {
        $answer = $this->get('/api/groups/' . rawurlencode($group) . '/members');
        return $answer['uids'] ?? [];
    }

    /**
     * `POST /api/groups/<group>/members` `{"add": [...], "remove": [...]}`:
     * the backend manages membership (with the node's default
     * `group-membership=persistent`, members stay in the group while offline).
     */
    public function changeMembers(string $group, array $add = [], array $remove = []): array
    {
        $body = [];
        if ($add !== []) {
            $body['add'] = array_values($add);
        }
        if ($remove !== []) {
            $body['remove'] = array_values($remove);
        }
        if ($body === []) {
            throw new InvalidArgumentException('changeMembers needs uids to add or remove');
        }
        return $this->post('/api/groups/' . rawurlencode($group) . '/members', $body);
    }

    // -- the cluster -------------------------------------------------------

    /** `GET /api/stats`: `['nodes' => K, 'connections' => N, 'users' => M]`, cluster-wide. */
    public function stats(): array
    {
        return $this->get('/api/stats');
    }

    /** `GET /api/nodes`: one entry per node (`id`, `listen`, `connections`, ...). */
    public function nodes(): array
    {
        return $this->get('/api/nodes');
    }

    // -- HTTP --------------------------------------------------------------

    private function withOptions(array $body, ?int $waitMs, ?string $idem, array $except): array
    {
        if ($waitMs !== null) {
            $body['wait_ms'] = $waitMs;
        }
        if ($idem !== null) {
            if ($idem === '' || strlen($idem) > 64) {
                throw new InvalidArgumentException('idem must be 1-64 bytes');
            }
            $body['idem'] = $idem;
        }
        if ($except !== []) {
            $body['except'] = array_values($except);
        }
        return $body;
    }

    private function get(string $path): array
    {
        return $this->request('GET', $path, null);
    }

    private function post(string $path, array $body): array
    {
        return $this->request('POST', $path, $body);
    }

    /** One request; returns the decoded JSON answer or throws WsclusterException. */
    private function request(string $method, string $path, ?array $body): array
    {
        if (!filter_var(ini_get('allow_url_fopen'), FILTER_VALIDATE_BOOLEAN)) {
            throw new WsclusterException('the wscluster client needs allow_url_fopen = On');
        }
        $headers = ['Accept: application/json', 'Connection: close'];
        if ($this->apiKey !== null && $this->apiKey !== '') {
            $headers[] = 'Authorization: Bearer ' . $this->apiKey;
        }
        $http = [
            'method' => $method,
            'ignore_errors' => true,        // read the body of 4xx/5xx answers too
            'timeout' => $this->timeout,
            'follow_location' => 0,
            'protocol_version' => 1.1,
        ];
        if ($body !== null) {
            $http['content'] = json_encode($body, JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE
                                                   | JSON_THROW_ON_ERROR);
            $headers[] = 'Content-Type: application/json';
        }
        $http['header'] = implode("\r\n", $headers);
        $context = stream_context_create(['http' => $http]);

        $url = $this->baseUrl . $path;
        $error = null;
        set_error_handler(static function (int $no, string $message) use (&$error): bool {
            $error = $message;
            return true;
        });
        try {
            $raw = file_get_contents($url, false, $context);
            $responseHeaders = function_exists('http_get_last_response_headers')
                ? (http_get_last_response_headers() ?? [])   // PHP >= 8.4
                : ($http_response_header ?? []);            // set by the call above
        } finally {
            restore_error_handler();
        }
        $status = self::statusOf($responseHeaders);
        if ($raw === false || $status === 0) {
            throw new WsclusterException("$method $url: no answer" . ($error ? " ($error)" : ''));
        }
        $decoded = json_decode($raw, true);
        $answer = json_last_error() === JSON_ERROR_NONE ? $decoded : $raw;
        if ($status < 200 || $status >= 300) {
            $text = is_array($answer) && isset($answer['error']) ? (string) $answer['error']
                                                                  : trim((string) $raw);
            throw new WsclusterException("$method $path: HTTP $status" . ($text !== '' ? ": $text" : ''),
                                         $status, $answer);
        }
        if (!is_array($answer)) {
            throw new WsclusterException("$method $path: the answer is not JSON", $status, $answer);
        }
        return $answer;
    }

    /** The status of the last response in `$http_response_header` (0 if none). */
    private static function statusOf(array $headers): int
    {
        $status = 0;
        foreach ($headers as $line) {
            if (preg_match('#^HTTP/\S+\s+(\d{3})#', $line, $m)) {
                $status = (int) $m[1];     // the last one wins (after any 1xx)
            }
        }
        return $status;
    }
}
