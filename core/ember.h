// The one header a user includes: tensors, ops and autograd (custom ops: autograd::Function).
#pragma once

#include "core/autograd.h"
#include "core/backend.h"
#include "core/custom_function.h"
#include "core/ops.h"
#include "core/tensor.h"
