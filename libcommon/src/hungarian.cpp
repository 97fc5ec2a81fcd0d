// Optimal assignment for ks-score: the Hungarian method with row and column potentials
// (Kuhn-Munkres in its shortest-augmenting-path form), O(n^2 m) for n <= m.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "ks/error.hpp"
#include "ks/score.hpp"

namespace ks::score {
namespace {

// Minimum-cost assignment of every one of n rows to a distinct column of m >= n.
// cost(r, c) = cost[r * m + c]. Returns the column of each row.
std::vector<int> min_cost_rows(const std::vector<double>& cost, int n, int m) {
    const double inf = std::numeric_limits<double>::infinity();
    // 1-based with a virtual column 0 that holds the row being inserted; row_of[c] == 0: free.
    std::vector<double> pot_row(n + 1, 0.0), pot_col(m + 1, 0.0);
    std::vector<int> row_of(m + 1, 0), prev_col(m + 1, 0);
    std::vector<double> slack(m + 1);
    std::vector<char> visited(m + 1);
    for (int r = 1; r <= n; ++r) {
        row_of[0] = r;
        int col = 0;
        std::fill(slack.begin(), slack.end(), inf);
        std::fill(visited.begin(), visited.end(), 0);
        // Grow a tree of tight edges from row r until it reaches a free column (Dijkstra on
        // reduced costs, which the potentials keep non-negative).
        while (row_of[col] != 0) {
            visited[col] = 1;
            const int row = row_of[col];
            double step = inf;
            int next = -1;
            for (int c = 1; c <= m; ++c) {
                if (visited[c]) continue;
                const double reduced = cost[static_cast<std::size_t>(row - 1) * m + (c - 1)] - pot_row[row] - pot_col[c];
                if (reduced < slack[c]) {
                    slack[c] = reduced;
                    prev_col[c] = col;
                }
                if (slack[c] < step) {  // strict: the lowest column wins ties, so results are reproducible
                    step = slack[c];
                    next = c;
                }
            }
            KS_ASSERT(next > 0, "assignment: no free column reachable");
            for (int c = 0; c <= m; ++c) {
                if (visited[c]) {
                    pot_row[row_of[c]] += step;
                    pot_col[c] -= step;
                } else {
                    slack[c] -= step;
                }
            }
            col = next;
        }
        // Flip the alternating path back to the virtual column.
        while (col != 0) {
            const int before = prev_col[col];
            row_of[col] = row_of[before];
            col = before;
        }
    }
    std::vector<int> col_of_row(n, -1);
    for (int c = 1; c <= m; ++c)
        if (row_of[c] != 0) col_of_row[row_of[c] - 1] = c - 1;
    return col_of_row;
}

}  // namespace

std::vector<int> assign_max_weight(const std::vector<double>& weight, int n_rows, int n_cols) {
    KS_ASSERT(n_rows >= 0 && n_cols >= 0, "assignment: negative size");
    KS_ASSERT(weight.size() == static_cast<std::size_t>(n_rows) * static_cast<std::size_t>(n_cols),
              "assignment: weight size is not n_rows * n_cols");
    for (double w : weight) KS_ASSERT(std::isfinite(w), "assignment: weights must be finite");
    if (n_rows == 0 || n_cols == 0) return std::vector<int>(n_rows, -1);
    if (n_rows <= n_cols) {
        std::vector<double> cost(weight.size());
        for (std::size_t k = 0; k < weight.size(); ++k) cost[k] = -weight[k];
        return min_cost_rows(cost, n_rows, n_cols);
    }
    // More rows than columns: assign every column to a row instead, then invert.
    std::vector<double> cost(weight.size());
    for (int r = 0; r < n_rows; ++r)
        for (int c = 0; c < n_cols; ++c)
            cost[static_cast<std::size_t>(c) * n_rows + r] = -weight[static_cast<std::size_t>(r) * n_cols + c];
    const std::vector<int> row_of_col = min_cost_rows(cost, n_cols, n_rows);
    std::vector<int> col_of_row(n_rows, -1);
    for (int c = 0; c < n_cols; ++c) col_of_row[row_of_col[c]] = c;
    return col_of_row;
}

}  // namespace ks::score
