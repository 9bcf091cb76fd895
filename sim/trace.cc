#include "sim/trace.h"

#include <string>

namespace latchkey::sim {

namespace {

using nlohmann::json;

template <class... Fs>
struct Overloaded : Fs... {
  using Fs::operator()...;
};
template <class... Fs>
Overloaded(Fs...) -> Overloaded<Fs...>;

json WritesToJson(const std::vector<core::AttributeWrite>& writes) {
  json out = json::array();
  for (const core::AttributeWrite& w : writes) {
    if (w.erase) {
      out.push_back({{"erase", w.name}});
    } else {
      out.push_back({{"set", w.name}, {"value", w.value}});
    }
  }
  return out;
}

json VersionToJson(const core::DataVersion& v) { return json::array({v.token, v.seq}); }

std::string Reason(core::Reason r) { return std::string(core::ReasonName(r)); }

}  // namespace

json AddressToJson(const core::Address& a) {
  switch (a.kind) {
    case core::NodeKind::kStore:
      return "s" + std::to_string(a.id) + "@" + std::to_string(a.incarnation);
    case core::NodeKind::kProcess:
      return "p" + std::to_string(a.id) + "@" + std::to_string(a.incarnation);
    case core::NodeKind::kAdmin:
      return "admin";
  }
  return "?";
}

json PortionToJson(const core::Portion& p) {
  json out;
  out["mode"] = p.mode == core::Mode::kShared ? "shared" : "exclusive";
  if (p.whole) {
    out["whole"] = true;
  } else {
    out["attributes"] = p.attributes;
  }
  return out;
}

json MessageToJson(const core::Message& message) {
  json j = std::visit(
      Overloaded{
          [](const core::Acquire& m) {
            return json{{"session", m.session},
                        {"request", m.request_id},
                        {"cached", VersionToJson(m.cached)},
                        {"try", m.try_only}};
          },
          [](const core::Release& m) {
            return json{{"session", m.session}, {"token", m.token}};
          },
          [](const core::Commit& m) {
            return json{{"session", m.session},
                        {"token", m.token},
                        {"seq", m.seq},
                        {"clear", m.clear_first},
                        {"writes", WritesToJson(m.writes.list())}};
          },
          [](const core::Heartbeat& m) {
            return json{{"seq", m.seq}};
          },
          [](const core::Reclaim& m) {
            return json{{"session", m.session}, {"token", m.token}};
          },
          [](const core::Cancel& m) {
            return json{{"session", m.session}, {"request", m.request_id}};
          },
          [](const core::ForceRelease& m) {
            return json{{"session", m.session}};
          },
          [](const core::AdminInvalidate& m) {
            return json{{"session", m.session}};
          },
          [](const core::Granted& m) {
            json g{{"session", m.session},
                   {"token", m.token},
                   {"request", m.request_id},
                   {"version", VersionToJson(m.version)}};
            if (m.has_snapshot) {
              json snapshot = json::object();  // name -> value, as a std::map gave
              for (const auto& [name, value] : m.snapshot) snapshot[name] = value;
              g["snapshot"] = std::move(snapshot);
            }
            return g;
          },
          [](const core::Queued& m) {
            return json{{"session", m.session}, {"request", m.request_id}, {"ahead", m.ahead}};
          },
          [](const core::Busy& m) {
            return json{{"session", m.session}, {"request", m.request_id}};
          },
          [](const core::Recall& m) {
            return json{{"session", m.session}, {"token", m.token}};
          },
          [](const core::ReleaseAck& m) {
            return json{{"session", m.session}, {"token", m.token}};
          },
          [](const core::CommitAck& m) {
            return json{{"session", m.session}, {"token", m.token}, {"seq", m.seq}};
          },
          [](const core::HeartbeatAck& m) {
            return json{{"seq", m.seq}};
          },
          [](const core::ReclaimAck& m) {
            return json{{"session", m.session}, {"token", m.token}};
          },
          [](const core::CancelAck& m) {
            return json{{"session", m.session}, {"request", m.request_id}};
          },
          [](const core::Revoked& m) {
            return json{{"session", m.session}, {"token", m.token}, {"reason", Reason(m.reason)}};
          },
          [](const core::Rejected& m) {
            return json{
                {"session", m.session},
                {"token", m.token},
                {"seq", m.seq},
                {"what",
                 std::string(core::MessageKindName(static_cast<core::MessageKind>(m.what)))},
                {"reason", Reason(m.reason)}};
          },
      },
      message);
  j["kind"] = std::string(core::MessageKindName(core::KindOf(message)));
  return j;
}

json EnvelopeToJson(const core::Envelope& e) {
  json j = MessageToJson(e.message);
  j["from"] = AddressToJson(e.from);
  j["to"] = AddressToJson(e.to);
  return j;
}

json RecordToJson(const core::Record& record) {
  return std::visit(
      Overloaded{
          [](const core::StoreStartedRecord& r) {
            return json{{"record", "StoreStarted"}, {"epoch", r.epoch}};
          },
          [](const core::GrantRecord& r) {
            return json{{"record", "Grant"},
                        {"session", r.session},
                        {"token", r.token},
                        {"holder", "p" + std::to_string(r.holder.id) + "@" +
                                       std::to_string(r.holder.incarnation)},
                        {"request", r.request_id}};
          },
          [](const core::TenureEndRecord& r) {
            return json{{"record", "TenureEnd"}, {"session", r.session}, {"token", r.token}};
          },
          [](const core::CommitRecord& r) {
            return json{{"record", "Commit"},     {"session", r.session},
                        {"token", r.token},       {"seq", r.seq},
                        {"clear", r.clear_first}, {"writes", WritesToJson(r.writes.list())}};
          },
          [](const core::SessionDroppedRecord& r) {
            return json{{"record", "SessionDropped"}, {"session", r.session}};
          },
      },
      record);
}

json EffectsToJson(const core::Effects& fx) {
  json out = json::object();
  if (!fx.persist.empty()) {
    json& p = out["persist"] = json::array();
    for (const core::Record& r : fx.persist) p.push_back(RecordToJson(r));
  }
  if (!fx.send.empty()) {
    json& s = out["send"] = json::array();
    for (const core::Envelope& e : fx.send) s.push_back(EnvelopeToJson(e));
  }
  if (!fx.wake.empty()) {
    json& w = out["wake"] = json::array();
    for (const core::ThreadEvent& t : fx.wake) {
      static constexpr const char* kKinds[] = {"granted", "committed", "rolled_back", "failed"};
      json e{{"thread", t.thread},
             {"session", t.session},
             {"event", kKinds[static_cast<int>(t.kind)]}};
      if (t.reason != core::Reason::kNone) e["reason"] = Reason(t.reason);
      w.push_back(e);
    }
  }
  if (fx.next_deadline != core::kNever) out["next"] = fx.next_deadline;
  return out;
}

}  // namespace latchkey::sim
