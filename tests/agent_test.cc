#include "core/agent.h"
