// The one header a user includes: tensors, ops and autograd.
#pragma once

#include "core/anomaly.h"
#include "core/autograd.h"
#include "core/backend.h"
#include "core/graph_dot.h"
#include "core/ops.h"
#include "core/profiler.h"
#include "core/tensor.h"
