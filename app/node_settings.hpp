#pragma once

// The settings of each of a node's actors, taken from its options: every
// actor gets only what it reads.

#include "actors/builtins.hpp"
#include "actors/discovery.hpp"
#include "actors/http_api.hpp"
#include "actors/node_identity.hpp"
#include "actors/peer.hpp"
#include "actors/registry.hpp"
#include "actors/webhook.hpp"
#include "config/options.hpp"

namespace wsc::settings {

message_settings messages(const options& opts);

registry_config registry(const options& opts, const node_identity& who,
                         bool custom_store);

peer_config peer(const options& opts, const node_identity& who);

discovery_config discovery(const options& opts, const node_identity& who,
                           bool clustered);

builtins_config builtins(const options& opts);

http_api_config http_api(const options& opts, const node_identity& who);

webhook_config webhook(const options& opts);

unread_config unread(const options& opts);

} // namespace wsc::settings
