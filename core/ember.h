// The one header a user includes: tensors, ops and autograd.
#pragma once

#include "core/autograd.h"
#include "core/backend.h"
#include "core/ops.h"
#include "core/tensor.h"
