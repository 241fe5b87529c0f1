#include "zerodet/store/object_id.h"

#include <gtest/gtest.h>

namespace zerodet::store {
namespace {

TEST(ObjectIdTest, FromNameIsSha1) {
  // SHA-1("abc"), FIPS 180-2 test vector.
  EXPECT_EQ(ObjectId::FromName("abc").ToHex(), "a9993e364706816aba3e25717850c26c9cd0d89d");
  EXPECT_NE(ObjectId::FromName("coco/1.jpg"), ObjectId::FromName("coco/2.jpg"));
}

TEST(ObjectIdTest, HexRoundTripAndErrors) {
  const ObjectId id = ObjectId::FromName("x");
  auto parsed = ObjectId::FromHex(id.ToHex());
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(*parsed, id);
  EXPECT_EQ(ObjectId::FromHex("abc").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ObjectId::FromHex(std::string(40, 'g')).status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(ObjectId::FromHex(std::string(40, 'F')).ok());
}

}  // namespace
}  // namespace zerodet::store
