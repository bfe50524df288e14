// The metrics CSV of the training examples, ember_mnist and ember_cifar10 (--metrics FILE,
// --metrics-every N): one schema, two kinds of row, so that one file holds a whole run and
// scripts/plot.py reads it without guessing.
//
//   # synthetic CIFAR-10 data ...      optional comment lines before the header (see start_metrics)
//   kind,epoch,step,loss,lr,samples_per_second,wall_seconds,epoch_seconds,train_loss,train_accuracy,test_loss,test_accuracy
//
// kind=step — every N optimizer steps (--metrics-every N; none without it):
//   epoch               the epoch the step belongs to (1-based)
//   step                optimizer steps since training began, epochs before a --resume included
//   loss                mean training loss of the steps since the previous step row (the last N,
//                       or fewer at the start of an epoch: the test pass is not counted)
//   lr                  learning rate of the optimizer's first parameter group
//   samples_per_second  training samples per second over those same steps
//   wall_seconds        seconds since training began (continued across --resume)
//   the other columns are empty
// kind=epoch — at the end of every epoch, after the test pass:
//   epoch, step, lr, wall_seconds as above (step: the epoch's last step)
//   samples_per_second  the epoch's training throughput; epoch_seconds: its training loop's time
//   train_loss, train_accuracy  mean over the epoch's training samples (accuracy in [0, 1])
//   test_loss, test_accuracy    over the whole test set
//   loss is empty
//
// Resuming (--resume) keeps exactly one copy of every row: the rows of epochs after the
// checkpoint's (an epoch that was cut short, or whose checkpoint never came) are dropped, and the
// resumed run writes them again. A run without --resume appends after whatever the file holds.
#pragma once

#include <cstdint>
#include <string>

namespace ember::examples {

// The header line, without its newline.
extern const char* const kMetricsHeader;

// One row; a step row leaves the epoch-only fields at NaN, which are written as empty cells.
struct MetricsRow {
  bool is_step = true;
  int64_t epoch = 0, step = 0;
  double loss = 0, lr = 0, samples_per_second = 0, wall_seconds = 0;
  double epoch_seconds = 0, train_loss = 0, train_accuracy = 0, test_loss = 0, test_accuracy = 0;
};

// Appends `text` to the file at `path`, checking the stream after the write, the flush and the
// close: a full disk (or /dev/full) must be an error, not a CSV that silently stays empty.
void append_text(const std::string& path, const std::string& text);

// Creates the CSV with its header at start-up (an unwritable path fails before training); an
// existing file must start with this schema's header (an older file is an error, not a mixed file).
// A non-empty `comment` is written as a line "# <comment>" before the header (ember_cifar10 marks a
// run on synthetic data so); an existing file must carry the same comment lines, so the rows of a
// run on real data and of one on synthetic data never end up in one file.
void start_metrics(const std::string& path, const std::string& comment = "");

// Appends one row.
void write_metrics_row(const std::string& path, const MetricsRow& row);

// On resume: drops the rows of epochs after `checkpoint_epoch` and any torn row (rewritten
// atomically, by rename; the comment lines and the header stay). Returns the wall_seconds of the last epoch row kept (0 if none), from
// which the resumed run's wall clock continues.
double truncate_metrics(const std::string& path, int64_t checkpoint_epoch);

}  // namespace ember::examples
