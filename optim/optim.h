// Everything in ember::optim: optimizers, learning-rate schedulers and gradient clipping.
#pragma once

#include "optim/adam.h"
#include "optim/grad_scaler.h"
#include "optim/clip_grad.h"
#include "optim/lr_scheduler.h"
#include "optim/optimizer.h"
#include "optim/sgd.h"
