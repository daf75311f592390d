#pragma once

// -- Atoms and type ids of wscluster ------------------------------------------
//
// Every message type that may cross to another node has a type id here; the
// block is registered once, by wsc::actor_config. Atom texts are at most ten
// characters (CAF 0.17).

#include "protocol/messages.hpp"

#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/type_id.hpp>

#include <cstdint>
#include <string>
#include <vector>

CAF_BEGIN_TYPE_ID_BLOCK(wscluster, caf::first_custom_type_id)

CAF_ADD_TYPE_ID(wscluster, (wsc::conn_ref))
CAF_ADD_TYPE_ID(wscluster, (wsc::binding))
CAF_ADD_TYPE_ID(wscluster, (wsc::node_route))
CAF_ADD_TYPE_ID(wscluster, (wsc::route_table))
CAF_ADD_TYPE_ID(wscluster, (wsc::node_info))
CAF_ADD_TYPE_ID(wscluster, (wsc::delivery))
CAF_ADD_TYPE_ID(wscluster, (wsc::delivery_batch))
CAF_ADD_TYPE_ID(wscluster, (wsc::delivery_report))
CAF_ADD_TYPE_ID(wscluster, (wsc::register_event))
CAF_ADD_TYPE_ID(wscluster, (wsc::logout_event))
CAF_ADD_TYPE_ID(wscluster, (wsc::discover_event))
CAF_ADD_TYPE_ID(wscluster, (wsc::shutdown_event))
CAF_ADD_TYPE_ID(wscluster, (wsc::recv_message_event))
CAF_ADD_TYPE_ID(wscluster, (wsc::presence_event))
CAF_ADD_TYPE_ID(wscluster, (std::vector<std::string>))
CAF_ADD_TYPE_ID(wscluster, (std::vector<bool>))
CAF_ADD_TYPE_ID(wscluster, (std::vector<wsc::binding>))
CAF_ADD_TYPE_ID(wscluster, (std::vector<wsc::node_info>))
CAF_ADD_TYPE_ID(wscluster, (wsc::join_event))
CAF_ADD_TYPE_ID(wscluster, (wsc::leave_event))
CAF_ADD_TYPE_ID(wscluster, (wsc::unread_event))
CAF_ADD_TYPE_ID(wscluster, (wsc::unread_watch))

CAF_END_TYPE_ID_BLOCK(wscluster)

// Local-only payloads, shared by pointer between actors of one process.
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(wsc::json_ptr)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(wsc::frame_ptr)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(wsc::sink_ref)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(wsc::http_exchange_ptr)

CAF_ADD_ATOM(wscluster, wsc::atom, frame, "frame")
CAF_ADD_ATOM(wscluster, wsc::atom, deliver, "deliver")
CAF_ADD_ATOM(wscluster, wsc::atom, closed, "closed")
CAF_ADD_ATOM(wscluster, wsc::atom, register_conn, "reg_conn")
CAF_ADD_ATOM(wscluster, wsc::atom, unregister, "unregister")
CAF_ADD_ATOM(wscluster, wsc::atom, send, "send")
CAF_ADD_ATOM(wscluster, wsc::atom, broadcast, "broadcast")
CAF_ADD_ATOM(wscluster, wsc::atom, presence, "presence")
CAF_ADD_ATOM(wscluster, wsc::atom, disconnect, "disconnect")
CAF_ADD_ATOM(wscluster, wsc::atom, members, "members")
CAF_ADD_ATOM(wscluster, wsc::atom, publish, "publish")
CAF_ADD_ATOM(wscluster, wsc::atom, join, "join")
CAF_ADD_ATOM(wscluster, wsc::atom, leave, "leave")
CAF_ADD_ATOM(wscluster, wsc::atom, remote, "remote")
CAF_ADD_ATOM(wscluster, wsc::atom, peer_up, "peer_up")
CAF_ADD_ATOM(wscluster, wsc::atom, peer_down, "peer_down")
CAF_ADD_ATOM(wscluster, wsc::atom, hello, "hello")
CAF_ADD_ATOM(wscluster, wsc::atom, shutdown, "shutdown")
CAF_ADD_ATOM(wscluster, wsc::atom, subscribe, "subscribe")
CAF_ADD_ATOM(wscluster, wsc::atom, unsubscribe, "unsubscr")
CAF_ADD_ATOM(wscluster, wsc::atom, bind, "bind")
CAF_ADD_ATOM(wscluster, wsc::atom, unbind, "unbind")
CAF_ADD_ATOM(wscluster, wsc::atom, rebind, "rebind")
CAF_ADD_ATOM(wscluster, wsc::atom, route, "route")
CAF_ADD_ATOM(wscluster, wsc::atom, group_route, "grp_route")
CAF_ADD_ATOM(wscluster, wsc::atom, node, "node")
CAF_ADD_ATOM(wscluster, wsc::atom, nodes, "nodes")
CAF_ADD_ATOM(wscluster, wsc::atom, claim, "claim")
CAF_ADD_ATOM(wscluster, wsc::atom, ping, "ping")
CAF_ADD_ATOM(wscluster, wsc::atom, tick, "tick")
CAF_ADD_ATOM(wscluster, wsc::atom, start, "start")
CAF_ADD_ATOM(wscluster, wsc::atom, drain, "drain")
CAF_ADD_ATOM(wscluster, wsc::atom, status, "status")
CAF_ADD_ATOM(wscluster, wsc::atom, ok, "ok")
CAF_ADD_ATOM(wscluster, wsc::atom, health, "health")
CAF_ADD_ATOM(wscluster, wsc::atom, request, "request")
CAF_ADD_ATOM(wscluster, wsc::atom, check, "check")
CAF_ADD_ATOM(wscluster, wsc::atom, append, "append")
CAF_ADD_ATOM(wscluster, wsc::atom, group_append, "grp_append")
CAF_ADD_ATOM(wscluster, wsc::atom, inbox, "inbox")
CAF_ADD_ATOM(wscluster, wsc::atom, read, "read")
CAF_ADD_ATOM(wscluster, wsc::atom, replay, "replay")
CAF_ADD_ATOM(wscluster, wsc::atom, relay, "relay")
CAF_ADD_ATOM(wscluster, wsc::atom, is_member, "is_member")
CAF_ADD_ATOM(wscluster, wsc::atom, stats, "stats")
CAF_ADD_ATOM(wscluster, wsc::atom, unread, "unread")
CAF_ADD_ATOM(wscluster, wsc::atom, posted, "posted")
// CONNECTION: token refresh.
CAF_ADD_ATOM(wscluster, wsc::atom, refresh, "refresh")
// DISCOVERY and the REGISTRY: the PEER, spawned after them.
CAF_ADD_ATOM(wscluster, wsc::atom, peer, "peer")
