// JSON renderings of the core's messages, records and effects, for traces
// (one JSON object per line) and for people reading them.
#pragma once

#include <nlohmann/json.hpp>

#include "core/effects.h"
#include "core/messages.h"

namespace latchkey::sim {

nlohmann::json AddressToJson(const core::Address& a);
nlohmann::json MessageToJson(const core::Message& m);
nlohmann::json EnvelopeToJson(const core::Envelope& e);
nlohmann::json RecordToJson(const core::Record& r);
nlohmann::json PortionToJson(const core::Portion& p);
nlohmann::json EffectsToJson(const core::Effects& fx);

}  // namespace latchkey::sim
