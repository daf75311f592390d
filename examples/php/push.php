<?php
/**
 * Pushes one message to a uid through the HTTP API of any wscluster node.
 *
 *     php push.php [options] <uid>[,<uid>...] <data>
 *
 * <data> is JSON (`'{"text":"hi"}'`, `42`, `'"a string"'`); anything that
 * does not parse as JSON is sent as `{"text": <data>}`.
 *
 * Options:
 *   --url=URL        the node (default $WSC_URL, else http://127.0.0.1:8080)
 *   --api-key=KEY    the node's api-key (default $WSC_API_KEY)
 *   --wait-ms=N      ask for receipts (connections and stored, per uid)
 *   --idem=KEY       idempotency key: running the same push again with the
 *                    same key delivers nothing twice
 *   --presence       afterwards, print whether each uid is online
 *
 * Prints the node's answer as JSON on stdout (with --presence, a second line
 * {"online": {...}}). Exit status: 0 sent, 1 the node refused or could not
 * be reached (the message names the HTTP status), 2 bad usage.
 */

declare(strict_types=1);

require __DIR__ . '/Wscluster.php';

function usage(string $problem): never
{
    fwrite(STDERR, "push.php: $problem\n"
        . "usage: php push.php [--url=URL] [--api-key=KEY] [--wait-ms=N] [--idem=KEY] [--presence] <uid>[,<uid>...] <data>\n");
    exit(2);
}

$options = ['url' => getenv('WSC_URL') ?: 'http://127.0.0.1:8080', 'api-key' => getenv('WSC_API_KEY') ?: null,
            'wait-ms' => null, 'idem' => null, 'presence' => false];
$positional = [];
foreach (array_slice($argv, 1) as $arg) {
    if (preg_match('/^--([a-z-]+)(?:=(.*))?$/s', $arg, $m)) {
        [$name, $value] = [$m[1], $m[2] ?? null];
        if (!array_key_exists($name, $options)) {
            usage("unknown option --$name");
        }
        if ($name === 'presence') {
            $options['presence'] = true;
        } elseif ($value === null || $value === '') {
            usage("--$name needs a value (--$name=...)");
        } else {
            $options[$name] = $value;
        }
    } else {
        $positional[] = $arg;
    }
}
if (count($positional) !== 2) {
    usage('expected a uid and the data');
}
[$uidArg, $dataArg] = $positional;
$uids = array_values(array_filter(explode(',', $uidArg), static fn ($u) => $u !== ''));
if ($uids === []) {
    usage('no uid given');
}
$data = json_decode($dataArg, true);
if (json_last_error() !== JSON_ERROR_NONE) {
    $data = ['text' => $dataArg];
}
$waitMs = null;
if ($options['wait-ms'] !== null) {
    if (!ctype_digit($options['wait-ms'])) {
        usage('--wait-ms must be a number of milliseconds');
    }
    $waitMs = (int) $options['wait-ms'];
}

try {
    $wsc = new Wscluster($options['url'], $options['api-key']);
    $answer = $wsc->send($uids, $data, waitMs: $waitMs,
                         idem: $options['idem']);
    echo json_encode($answer, JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE), "\n";
    if ($options['presence']) {
        echo json_encode(['online' => $wsc->presence($uids)], JSON_UNESCAPED_SLASHES), "\n";
    }
} catch (WsclusterException $e) {
    fwrite(STDERR, 'push.php: ' . $e->getMessage() . "\n");
    exit(1);
} catch (InvalidArgumentException $e) {
    usage($e->getMessage());
}
