// The data pipeline in one include: datasets (MNIST, CIFAR-10, tensors in memory), per-sample
// transforms and the multi-threaded DataLoader. Namespace ember::data.
#pragma once

#include "data/cifar10.h"
#include "data/dataloader.h"
#include "data/dataset.h"
#include "data/image_dataset.h"
#include "data/mnist.h"
#include "data/subset.h"
#include "data/transforms.h"
