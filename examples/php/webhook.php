<?php
/**
 * Receives wscluster webhooks (CONTRACT.md, section 5: Webhooks, Unread hook).
 *
 * A front controller for PHP's built-in server (or any PHP SAPI: point the
 * node's `--webhook-url` at it):
 *
 *     WSC_WEBHOOK_SECRET=s3cret WSC_DATA_DIR=/tmp/wsc-php php -S 127.0.0.1:8090 webhook.php
 *     build/wscluster --webhook-url=http://127.0.0.1:8090/ --webhook-secret=s3cret \
 *                     --webhook-events=online,offline,unread --unread-after=30s
 *
 * What it does with one `POST /`:
 *   1. checks `X-Wscluster-Signature: sha256=<hex>` against HMAC-SHA256 of the
 *      raw body under the shared secret (hash_hmac + hash_equals); a missing
 *      or wrong signature is answered 401 and nothing of the body is used;
 *   2. drops events whose `id` it has handled before (the cluster delivers at
 *      least once and retries failed POSTs);
 *   3. handles each event: `online`/`offline`/`register`/`logout`/`join`/
 *      `leave` are written to `events.jsonl`; `unread` sends a (fake) mobile
 *      push, written to `push.jsonl`; unknown names are logged and ignored;
 *   4. answers 200 once every event is handled. When one fails it answers 500,
 *      so the node posts the batch again: the events already handled are
 *      skipped then as repeats, the failed one is tried again.
 *
 * `GET /healthz` answers `ok` (for process supervisors and the tests).
 *
 * Environment: WSC_WEBHOOK_SECRET (required; the node's `webhook-secret`),
 * WSC_DATA_DIR (where the files go; default: the system temp dir's
 * `wscluster-php-example`). Not WSCLUSTER_*: the node reads every such
 * variable as one of its options.
 */

declare(strict_types=1);

const MAX_BODY_BYTES = 4 * 1024 * 1024;
// Bodies older than this are refused (a replay of a captured POST); event ids
// are remembered for longer than that, so every replay is caught one way or
// the other. The node retries for minutes, not hours.
const MAX_BODY_AGE_MS = 24 * 3600 * 1000;
const SEEN_KEEP_SECONDS = 2 * 24 * 3600;

/** Answers with a JSON body and ends the request. */
function respond(int $status, array $body): never
{
    http_response_code($status);
    header('Content-Type: application/json');
    echo json_encode($body, JSON_UNESCAPED_SLASHES), "\n";
    exit;
}

function log_line(string $text): void
{
    error_log('webhook: ' . $text);    // stderr under `php -S`, the server log elsewhere
}

function data_dir(): string
{
    $dir = getenv('WSC_DATA_DIR') ?: sys_get_temp_dir() . '/wscluster-php-example';
    if (!is_dir($dir) && !mkdir($dir, 0700, true) && !is_dir($dir)) {
        throw new RuntimeException("cannot create data dir $dir");
    }
    return $dir;
}

/** Appends one JSON line to a file in the data dir (locked, so concurrent workers do not interleave). */
function append_jsonl(string $file, array $record): void
{
    $line = json_encode($record, JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE | JSON_THROW_ON_ERROR) . "\n";
    if (file_put_contents(data_dir() . '/' . $file, $line, FILE_APPEND | LOCK_EX) !== strlen($line)) {
        throw new RuntimeException("cannot append to $file");
    }
}

// -- signature ----------------------------------------------------------------

/** True when `$header` is `sha256=<hex HMAC-SHA256 of $body under $secret>`. */
function signature_ok(string $body, ?string $header, string $secret): bool
{
    if ($header === null || !str_starts_with($header, 'sha256=')) {
        return false;
    }
    $given = strtolower(trim(substr($header, strlen('sha256='))));
    $expected = hash_hmac('sha256', $body, $secret);
    return hash_equals($expected, $given);      // constant time
}

// -- repeats --------------------------------------------------------------------

/**
 * The store of handled event ids: one empty file per id (named by its
 * SHA-256) under `seen/`. Creating it with mode 'x' is atomic, so two workers
 * handling the same event at once cannot both claim it.
 */
final class SeenStore
{
    private string $dir;

    public function __construct(string $dataDir)
    {
        $this->dir = $dataDir . '/seen';
        if (!is_dir($this->dir) && !@mkdir($this->dir, 0700) && !is_dir($this->dir)) {
            throw new RuntimeException("cannot create {$this->dir}");
        }
    }

    private function path(string $id): string
    {
        return $this->dir . '/' . hash('sha256', $id);
    }

    /** Claims `$id`; false when it was claimed before (a repeat). */
    public function claim(string $id): bool
    {
        $f = @fopen($this->path($id), 'x');
        if ($f === false) {
            if (file_exists($this->path($id))) {
                return false;
            }
            throw new RuntimeException("cannot write to {$this->dir}");
        }
        fclose($f);
        return true;
    }

    /** Gives a claim back (its handling failed; the node's retry will try again). */
    public function release(string $id): void
    {
        @unlink($this->path($id));
    }

    /** Now and then, forgets ids older than SEEN_KEEP_SECONDS. */
    public function prune(): void
    {
        if (random_int(0, 99) !== 0) {
            return;
        }
        $limit = time() - SEEN_KEEP_SECONDS;
        foreach (new DirectoryIterator($this->dir) as $entry) {
            if ($entry->isFile() && $entry->getMTime() < $limit) {
                @unlink($entry->getPathname());
            }
        }
    }
}

// -- what the backend does with events --------------------------------------------

/**
 * The application's mobile push. A real backend would look up the uid's
 * device tokens and call FCM / APNs (or send an e-mail); this one appends a
 * JSON line to `push.jsonl`.
 */
function fake_mobile_push(string $uid, string $title, string $body, array $extra): void
{
    append_jsonl('push.jsonl', [
        'time_ms' => (int) floor(microtime(true) * 1000),
        'uid' => $uid,
        'title' => $title,
        'body' => $body,
    ] + $extra);
}

/** An event that cannot be handled as it is: logged and dropped, never retried. */
final class MalformedEvent extends UnexpectedValueException
{
}

function require_string(array $event, string $field): string
{
    $value = $event[$field] ?? null;
    if (!is_string($value) || $value === '') {
        throw new MalformedEvent("event {$event['name']} without string '$field'");
    }
    return $value;
}

/**
 * Handles one event (signature checked, not a repeat). Throws MalformedEvent
 * to drop it, anything else to have it retried.
 */
function handle_event(array $event, int $timeMs): void
{
    $name = $event['name'];
    $record = ['received_ms' => (int) floor(microtime(true) * 1000), 'time_ms' => $timeMs,
               'signature_verified' => true, 'event' => $event];
    switch ($name) {
        case 'online':
            require_string($event, 'uid');
            append_jsonl('events.jsonl', $record);      // e.g. mark the user online in the app's DB
            break;
        case 'offline':
            require_string($event, 'uid');              // reason: closed | node_lost
            append_jsonl('events.jsonl', $record);
            break;
        case 'register':
        case 'logout':
        case 'join':
        case 'leave':
            require_string($event, 'uid');
            append_jsonl('events.jsonl', $record);
            break;
        case 'unread':
            // {uid, msg_id, seq, from, group?}: no device confirmed the message in time.
            $uid = require_string($event, 'uid');
            $from = $event['from'] ?? null;
            $group = $event['group'] ?? null;
            $title = is_string($group) ? "New message in $group"
                   : (is_string($from) ? "New message from $from" : 'New message');
            append_jsonl('events.jsonl', $record);
            fake_mobile_push($uid, $title, 'Open the app to read it.', [
                'event_id' => $event['id'],
                'msg_id' => $event['msg_id'] ?? null,
                'seq' => $event['seq'] ?? null,
                'from' => $from,
                'group' => $group,
            ]);
            break;
        default:
            // Newer nodes may send more names; accept them so they are not retried.
            log_line("ignoring event '$name' (" . $event['id'] . ')');
    }
}

// -- the request --------------------------------------------------------------------

function main(): void
{
    set_error_handler(static function (int $no, string $message, string $file, int $line): bool {
        if (!(error_reporting() & $no)) {
            return false;                               // silenced with @
        }
        throw new ErrorException($message, 0, $no, $file, $line);
    });

    $method = $_SERVER['REQUEST_METHOD'] ?? 'GET';
    $path = parse_url($_SERVER['REQUEST_URI'] ?? '/', PHP_URL_PATH) ?: '/';

    if ($path === '/healthz') {
        respond(200, ['ok' => true]);
    }
    if ($path !== '/') {
        respond(404, ['error' => 'not found']);
    }
    if ($method !== 'POST') {
        header('Allow: POST');
        respond(405, ['error' => 'POST webhooks here']);
    }

    $secret = getenv('WSC_WEBHOOK_SECRET');
    if ($secret === false || $secret === '') {
        log_line('WSC_WEBHOOK_SECRET is not set: refusing every webhook');
        respond(500, ['error' => 'webhook secret not configured']);
    }

    if ((int) ($_SERVER['CONTENT_LENGTH'] ?? 0) > MAX_BODY_BYTES) {
        respond(413, ['error' => 'body too large']);
    }
    $body = file_get_contents('php://input', false, null, 0, MAX_BODY_BYTES + 1);
    if ($body === false || strlen($body) > MAX_BODY_BYTES) {
        respond(413, ['error' => 'body too large']);
    }

    // Verify before looking at anything in the body.
    if (!signature_ok($body, $_SERVER['HTTP_X_WSCLUSTER_SIGNATURE'] ?? null, $secret)) {
        log_line('rejected a POST with a missing or wrong signature from '
                 . ($_SERVER['REMOTE_ADDR'] ?? '?'));
        respond(401, ['error' => 'bad signature']);
    }

    try {
        $batch = json_decode($body, true, 64, JSON_THROW_ON_ERROR);
    } catch (JsonException $e) {
        respond(400, ['error' => 'body is not JSON']);
    }
    if (!is_array($batch) || !is_int($batch['time_ms'] ?? null) || !is_array($batch['events'] ?? null)
        || !array_is_list($batch['events'])) {
        respond(400, ['error' => 'expected {"time_ms": T, "events": [...]}']);
    }
    $nowMs = (int) floor(microtime(true) * 1000);
    if ($nowMs - $batch['time_ms'] > MAX_BODY_AGE_MS) {
        respond(400, ['error' => 'batch too old']);
    }

    $seen = new SeenStore(data_dir());
    $handled = 0;
    $repeats = 0;
    $failed = 0;
    foreach ($batch['events'] as $event) {
        if (!is_array($event) || !is_string($event['id'] ?? null) || $event['id'] === ''
            || !is_string($event['name'] ?? null)) {
            log_line('skipping a malformed event: ' . json_encode($event));
            continue;   // retrying would not make it better
        }
        if (!$seen->claim($event['id'])) {
            $repeats++;
            continue;
        }
        try {
            handle_event($event, $batch['time_ms']);
            $handled++;
        } catch (MalformedEvent $e) {
            log_line("dropping event {$event['id']}: " . $e->getMessage());   // a retry would not help
        } catch (Throwable $e) {
            $seen->release($event['id']);
            $failed++;
            log_line("event {$event['id']} ({$event['name']}) failed: " . $e->getMessage());
        }
    }
    $seen->prune();
    respond($failed > 0 ? 500 : 200,
            ['ok' => $failed === 0, 'handled' => $handled, 'repeats' => $repeats, 'failed' => $failed]);
}

try {
    main();
} catch (Throwable $e) {
    log_line('internal error: ' . $e->getMessage());
    respond(500, ['error' => 'internal error']);
}
