// The one header a user includes: tensors, ops and autograd (custom ops: autograd::Function).
#pragma once

#include "core/anomaly.h"
#include "core/autocast.h"
#include "core/autograd.h"
#include "core/backend.h"
#include "core/custom_function.h"
#include "core/graph_dot.h"
#include "core/ops.h"
#include "core/profiler.h"
#include "core/tensor.h"
