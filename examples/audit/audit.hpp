#pragma once

// An event actor that writes every REGISTER, LOGOUT, DISCOVER and SHUTDOWN
// of its node to stdout, one JSON object per line:
//
//   {"event":"REGISTER","node":"n1","conn":"n1-..","uid":"alice","ts":..}
//   {"event":"SHUTDOWN","node":"n2","reason":"timeout","ts":..}

#include "protocol/messages.hpp"

#include <caf/behavior.hpp>
#include <caf/fwd.hpp>

#include <cstdint>

namespace example {

/// The events the AUDIT actor handles, for `node::subscribe`.
constexpr uint32_t audit_events =
    wsc::on_register | wsc::on_logout | wsc::on_discover | wsc::on_shutdown;

/// The AUDIT event actor (dynamically typed: it takes the event structs).
caf::behavior audit(caf::event_based_actor* self);

} // namespace example
